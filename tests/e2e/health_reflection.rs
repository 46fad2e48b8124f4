//! The control plane serves the standard gRPC health and reflection services, so generic tools
//! (grpcurl, grpc_health_probe, load balancers) work against it without our .proto files.

use crate::support::World;
use prost::Message;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1 as reflection;
use tonic_reflection::pb::v1alpha as reflection_alpha;

async fn channel(world: &World) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(world.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_check_answers_serving_for_the_server_and_each_service() {
    let world = World::start(&[]).await;
    let mut health = HealthClient::new(channel(&world).await);
    for service in [
        "",
        "droidfleet.v1.AdminService",
        "droidfleet.v1.DeviceGateway",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "droidfleet.v1.DeviceHarness".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code(),
        tonic::Code::NotFound,
        "the harness is the agent's, not ours"
    );
}

async fn ask(
    client: &mut reflection::server_reflection_client::ServerReflectionClient<
        tonic::transport::Channel,
    >,
    request: reflection::server_reflection_request::MessageRequest,
) -> reflection::server_reflection_response::MessageResponse {
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    responses
        .message()
        .await
        .unwrap()
        .expect("one answer")
        .message_response
        .expect("with a body")
}

#[tokio::test]
async fn reflection_lists_the_services_and_describes_the_admin_api() {
    let world = World::start(&[]).await;
    let mut client =
        reflection::server_reflection_client::ServerReflectionClient::new(channel(&world).await);
    use reflection::server_reflection_request::MessageRequest;
    use reflection::server_reflection_response::MessageResponse;

    let MessageResponse::ListServicesResponse(list) =
        ask(&mut client, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "droidfleet.v1.AdminService",
        "droidfleet.v1.DeviceGateway",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"droidfleet.v1.DeviceHarness"),
        "only what this server serves is listed: {names:?}"
    );

    // A generic client can learn the admin API's methods, RemoteLock among them.
    let MessageResponse::FileDescriptorResponse(files) = ask(
        &mut client,
        MessageRequest::FileContainingSymbol("droidfleet.v1.AdminService".into()),
    )
    .await
    else {
        panic!("expected file descriptors");
    };
    let methods: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(&bytes[..]).unwrap())
        .flat_map(|file| file.service)
        .filter(|service| service.name() == "AdminService")
        .flat_map(|service| service.method)
        .map(|method| method.name().to_string())
        .collect();
    for expected in [
        "ResetPasscode",
        "RemoteLock",
        "ReEnrollDevice",
        "AssignRole",
    ] {
        assert!(
            methods.iter().any(|m| m == expected),
            "{expected} missing from {methods:?}"
        );
    }

    // The older v1alpha protocol (still the default of some tools) answers too.
    let mut alpha = reflection_alpha::server_reflection_client::ServerReflectionClient::new(
        channel(&world).await,
    );
    let request = reflection_alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection_alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let answer = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(reflection_alpha::server_reflection_response::MessageResponse::ListServicesResponse(
        list,
    )) = answer.message_response
    else {
        panic!("expected a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "droidfleet.v1.AdminService")
    );
}
