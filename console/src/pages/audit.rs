//! The audit log (ListAuditEvents, which needs Audit.Read for every group): every admin call,
//! the console's included, newest first, filtered by principal, operation or device.

use super::{Section, SignedIn, State, frame};
use crate::error::PageError;
use crate::layout::{badge, utc};
use axum::extract::{Query, State as Shared};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use maud::{Markup, html};

/// Entries on the page.
const LIMIT: u32 = 200;

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    device: String,
}

pub(crate) async fn log(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Query(query): Query<AuditQuery>,
) -> Result<Markup, PageError> {
    let events = state
        .api
        .list_audit_events(signed_in.request(pb::ListAuditEventsRequest {
            device_id: query.device.trim().to_string(),
            principal: query.principal.trim().to_string(),
            operation: query.operation.trim().to_string(),
            since_ms: 0,
            until_ms: 0,
            limit: LIMIT,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .events;
    let body = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/audit" {
            input type="text" name="principal" value=(query.principal) placeholder="Principal"
                aria-label="Principal";
            input type="text" name="operation" value=(query.operation)
                placeholder="Operation, e.g. ResetPasscode" aria-label="Operation";
            input type="text" name="device" value=(query.device) placeholder="Device id"
                aria-label="Device id";
            button type="submit" { "Filter" }
        }
        p.muted { "The newest " (LIMIT) " entries that match. Passcodes and tokens are never recorded." }
        table #audit {
            thead { tr {
                th { "When" } th { "Principal" } th { "Operation" } th { "Device" }
                th { "Action" } th { "Result" } th { "Detail" }
            } }
            tbody {
                @for event in &events {
                    tr {
                        td { (utc(event.at_ms)) }
                        td { (event.principal) }
                        td.operation { (event.operation) }
                        td {
                            @if !event.device_id.is_empty() {
                                a href={ "/devices/" (event.device_id) } { code { (event.device_id) } }
                            }
                        }
                        td {
                            @if !event.action_id.is_empty() {
                                a href={ "/actions/" (event.action_id) } { code { (event.action_id) } }
                            }
                        }
                        td.result {
                            (badge(if event.result == "ok" { "ok" } else { "refused" }))
                            @if event.result != "ok" { " " code { (event.result) } }
                        }
                        td { (event.detail) }
                    }
                }
            }
        }
    };
    Ok(frame(&signed_in, Section::Audit, "Audit log", body))
}
