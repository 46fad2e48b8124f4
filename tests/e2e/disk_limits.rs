//! What the control plane keeps on disk: calls that add data are refused while free space is
//! under the reserve (a real `droidfleet serve` process, its real disk), and the audit log is
//! pruned oldest first past its row limit by the background task.

use crate::support::{Deployment, Embedded};
use droidfleet_proto::v1 as pb;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_disk_reserve_calls_that_add_data_are_refused_and_the_rest_served() {
    let deployment = Deployment::new();
    // No disk has an exbibyte free: the reserve is under water from the start.
    let control_plane =
        deployment.control_plane_with(&["--disk-reserve-mib", "1099511627776"], "info");
    let mut admin = deployment.admin().await;

    let refused = admin
        .client
        .create_enrollment_token(admin.request(pb::CreateEnrollmentTokenRequest {
            max_uses: 1,
            ttl_seconds: 600,
            group: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("under its reserve")
            && refused.message().contains("--disk-reserve-mib"),
        "the refusal names the reserve and the setting: {}",
        refused.message()
    );
    let created = admin
        .client
        .create_principal(admin.request(pb::CreatePrincipalRequest {
            name: "auditor".into(),
            roles: vec!["Read Only Operator".into()],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(created.code(), Code::ResourceExhausted, "{created:?}");

    // Reads are served, and the refusals were audited.
    admin
        .client
        .get_caller(admin.request(pb::GetCallerRequest::default()))
        .await
        .unwrap();
    admin
        .client
        .list_devices(admin.request(pb::ListDevicesRequest::default()))
        .await
        .unwrap();
    let audited = admin.audit("CreateEnrollmentToken").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].result, "RESOURCE_EXHAUSTED");

    // With the reserve back to a size the disk has, the same data folder takes the call, and
    // nothing recorded before is lost.
    assert!(control_plane.terminate().success());
    let _control_plane = deployment.control_plane_with(&["--disk-reserve-mib", "1"], "info");
    let mut admin = deployment.admin().await;
    admin.enrollment_token(1, "").await;
    let audited = admin.audit("CreateEnrollmentToken").await;
    let results: Vec<&str> = audited.iter().map(|e| e.result.as_str()).collect();
    assert_eq!(results, ["ok", "RESOURCE_EXHAUSTED"], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_pruned_to_its_row_limit_oldest_first() {
    const KEEP: u64 = 5;
    let embedded = Embedded::start_with(|config| {
        config.purge_interval = Duration::from_millis(100);
        config.disk.audit_max_rows = KEEP;
    })
    .await;
    let mut admin = embedded.admin().await;
    for _ in 0..3 {
        admin
            .client
            .list_devices(admin.request(pb::ListDevicesRequest::default()))
            .await
            .unwrap();
    }
    for _ in 0..20 {
        admin
            .client
            .get_caller(admin.request(pb::GetCallerRequest::default()))
            .await
            .unwrap();
    }
    // A purge run that started after the last call: the one after the next to complete.
    let mut runs = embedded.purge_runs();
    let seen = *runs.borrow_and_update();
    tokio::time::timeout(
        crate::support::DEADLINE,
        runs.wait_for(|runs| *runs >= seen + 2),
    )
    .await
    .expect("two purge runs")
    .unwrap();

    let events = admin
        .client
        .list_audit_events(admin.request(pb::ListAuditEventsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .events;
    let operations: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        vec!["GetCaller"; KEEP as usize],
        "only the newest {KEEP} rows are kept"
    );
    embedded.stop().await;
}
