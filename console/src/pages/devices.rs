//! Devices > All devices: the list (SearchDevices: search, type, group and latest-action filters,
//! a page at a time), and a device's page: its enrollment type, stores and their reset tokens,
//! policies, the support matrix row and the seed's rules that apply, its actions, and the Reset
//! passcode and Remote lock buttons its roles allow there.

use super::words::{self, LOCK_POLICY_RULE, NO_POLICY_RULE};
use super::{Section, SignedIn, State, csrf_field, frame};
use crate::error::PageError;
use crate::layout::{badge, relative, time_of_day, utc};
use axum::extract::{Path, Query, State as Shared};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use maud::{Markup, html};

/// Devices per page of the list.
const PAGE_SIZE: i32 = 50;

/// The list's filters and position, as the filter form and the page links put them in the
/// address (none of them is a secret).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub(crate) struct ListQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    search: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    ownership: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    page: String,
}

impl ListQuery {
    fn request(&self) -> Result<pb::SearchDevicesRequest, PageError> {
        let ownership = match self.ownership.as_str() {
            "" => pb::Ownership::Unspecified,
            value => words::OWNERSHIPS
                .iter()
                .find(|(name, _, _)| *name == value)
                .map(|(_, _, ownership)| *ownership)
                .ok_or_else(|| {
                    PageError::Invalid(format!(
                        "type {value:?} is not an enrollment type (cosu, cobo, cope, byod, aosp)"
                    ))
                })?,
        };
        let state = match self.state.as_str() {
            "" => pb::ActionState::Unspecified,
            value => words::STATES
                .iter()
                .find(|(name, _)| *name == value)
                .map(|(_, state)| *state)
                .ok_or_else(|| {
                    PageError::Invalid(format!("state {value:?} is not an action state"))
                })?,
        };
        Ok(pb::SearchDevicesRequest {
            page_size: PAGE_SIZE,
            page_token: self.page.trim().to_string(),
            search: self.search.trim().to_string(),
            ownership: ownership as i32,
            group: self.group.trim().to_string(),
            latest_action_state: state as i32,
        })
    }

    /// The address of the same list at another page.
    fn at_page(&self, token: &str) -> String {
        let query = ListQuery {
            page: token.to_string(),
            ..self.clone()
        };
        format!(
            "/devices?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    }
}

pub(crate) async fn list(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Markup, PageError> {
    let request = query.request()?;
    let page = state
        .api
        .search_devices(signed_in.request(request))
        .await?
        .into_inner();
    let now = state.clock.now();
    let body = html! {
        h1 { "All devices" }
        form.filters #device-filters method="get" action="/devices" {
            input type="search" name="search" value=(query.search)
                placeholder="Search by name or device id" aria-label="Search";
            select name="type" aria-label="Enrollment type" {
                option value="" { "Every enrollment type" }
                @for (value, name, _) in words::OWNERSHIPS {
                    option value=(value) selected[query.ownership == value] { (name) }
                }
            }
            input type="text" name="group" value=(query.group) placeholder="Group"
                aria-label="Group";
            select name="state" aria-label="Latest action" {
                option value="" { "Any latest action" }
                @for (value, _) in words::STATES {
                    option value=(value) selected[query.state == value] {
                        "Latest action " (value.replace('_', " "))
                    }
                }
            }
            button type="submit" { "Search" }
        }
        @if page.devices.is_empty() {
            p.empty #no-devices { "No device matches." }
        } @else {
            table #devices {
                thead { tr {
                    th { "Device" } th { "Enrollment type" } th { "Group" } th { "Status" }
                    th { "Last check-in" } th { "Latest action" }
                } }
                tbody {
                    @for listed in &page.devices {
                        @if let Some(device) = &listed.device {
                            (device_row(device, listed.latest_action.as_ref(), now))
                        }
                    }
                }
            }
        }
        nav.pager {
            @if !page.previous_page_token.is_empty() {
                a #previous-page rel="prev" href=(query.at_page(&page.previous_page_token)) {
                    "‹ Previous"
                }
            }
            @if !query.page.is_empty() {
                a #first-page href=(query.at_page("")) { "First page" }
            }
            @if !page.next_page_token.is_empty() {
                a #next-page rel="next" href=(query.at_page(&page.next_page_token)) {
                    "Next ›"
                }
            }
        }
    };
    Ok(frame(&signed_in, Section::Devices, "All devices", body))
}

fn device_row(device: &pb::Device, latest: Option<&pb::Action>, now: u64) -> Markup {
    html! {
        tr data-device-id=(device.device_id) {
            td { a href={ "/devices/" (device.device_id) } { (device.display_name) } }
            td title=(words::ownership_long(device.ownership)) {
                (words::ownership_short(device.ownership))
            }
            td { (device.group) }
            td { (online(device.online)) }
            td { (seen(device.last_seen_ms, now)) }
            td {
                @if let Some(action) = latest {
                    a href={ "/actions/" (action.action_id) } {
                        (words::kind_name(action.kind)) " "
                    }
                    (badge(words::state_name(action.state)))
                } @else {
                    span.muted { "none" }
                }
            }
        }
    }
}

fn online(online: bool) -> Markup {
    badge(if online { "online" } else { "offline" })
}

fn seen(last_seen_ms: u64, now: u64) -> Markup {
    html! {
        @if last_seen_ms == 0 {
            span.muted { "never" }
        } @else {
            time title=(utc(last_seen_ms)) { (relative(now, last_seen_ms)) }
        }
    }
}

/// What the caller may do on this device, from GetCaller's answer for it.
struct Allowed {
    reset: bool,
    lock: bool,
}

impl Allowed {
    fn from(caller: &pb::Caller) -> Allowed {
        let holds = |needed: &[&str]| {
            needed
                .iter()
                .all(|p| caller.device_permissions.iter().any(|held| held == p))
        };
        Allowed {
            reset: holds(&[
                "ManagedDevices.Read",
                "ManagedDevices.Update",
                "RemoteTasks.ResetPasscode",
            ]),
            lock: holds(&["RemoteTasks.RemoteLock", "ManagedDevices.Read"]),
        }
    }
}

pub(crate) async fn device(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(device_id): Path<String>,
) -> Result<Markup, PageError> {
    let device = state
        .api
        .get_device(signed_in.request(pb::GetDeviceRequest {
            device_id: device_id.clone(),
        }))
        .await?
        .into_inner();
    let caller = state
        .api
        .get_caller(signed_in.request(pb::GetCallerRequest {
            device_id: device_id.clone(),
        }))
        .await?
        .into_inner();
    let actions = state
        .api
        .list_actions(signed_in.request(pb::ListActionsRequest {
            device_id: device_id.clone(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .actions;
    let now = state.clock.now();
    let allowed = Allowed::from(&caller);
    let body = html! {
        p.crumbs { a href="/devices" { "Devices" } " › " a href="/devices" { "All devices" } }
        h1 #device-name { (device.display_name) }
        section.card #overview {
            h2 { "Overview" }
            dl {
                dt { "Enrollment type" } dd #enrollment-type { (words::ownership_long(device.ownership)) }
                dt { "Android" } dd #android { (words::android(&device)) }
                dt { "Group" } dd { (device.group) }
                dt { "Device id" } dd { code { (device.device_id) } }
                dt { "Enrolled" } dd { (utc(device.enrolled_at_ms)) }
            }
        }
        (actions_card(&signed_in, &device, &allowed))
        section.card #device-status data-live={ "/devices/" (device.device_id) "/live" } {
            (status(&device, now))
        }
        section.card #history {
            h2 { "Remote actions" }
            @if actions.is_empty() {
                p.muted { "No remote action yet." }
            } @else {
                (actions_table(&actions, now))
            }
        }
    };
    Ok(frame(
        &signed_in,
        Section::Devices,
        &device.display_name,
        body,
    ))
}

/// The "…" menu with the buttons the caller's roles allow on this device, and the seed's rules
/// that apply to it right now.
fn actions_card(signed_in: &SignedIn, device: &pb::Device, allowed: &Allowed) -> Markup {
    let reset_scope = words::resettable_scope(device.ownership);
    let mut lock_scopes = vec![pb::CredentialScope::Device];
    if words::has_work_profile(device.ownership) {
        lock_scopes.push(pb::CredentialScope::WorkProfile);
    }
    let reset_policy = words::policy_of(device, reset_scope).is_some();
    let reset_token = device.escrowed_token_scopes.contains(&(reset_scope as i32));
    let resets = |scope: pb::CredentialScope| scope == reset_scope;
    html! {
        section.card #device-actions {
            h2 { "Device actions" }
            @if allowed.reset || allowed.lock {
                details.menu #actions-menu {
                    summary title="Device actions" { "…" }
                    div.menu-items {
                        @if allowed.reset {
                            form method="post" action={ "/devices/" (device.device_id) "/reset" } {
                                (csrf_field(signed_in))
                                button #reset-passcode type="submit" { "Reset passcode" }
                                span.hint { "resets the " (words::scope_name(reset_scope as i32)) " passcode" }
                            }
                        }
                        @if allowed.lock {
                            @for scope in &lock_scopes {
                                form method="post" action={ "/devices/" (device.device_id) "/lock" } {
                                    (csrf_field(signed_in))
                                    input type="hidden" name="scope" value=(words::scope_value(*scope));
                                    button id={ "remote-lock-" (words::scope_value(*scope)) } type="submit" {
                                        "Remote lock"
                                    }
                                    span.hint { "locks the " (words::scope_name(*scope as i32)) }
                                }
                            }
                        }
                    }
                }
            } @else {
                p.muted #no-actions {
                    "Your roles allow no remote action on this device: a passcode reset needs "
                    "RemoteTasks.ResetPasscode, ManagedDevices.Read and ManagedDevices.Update "
                    "for its group."
                }
            }
            table.matrix #support-matrix {
                caption { "Passcode reset for " (words::ownership_short(device.ownership)) }
                tr {
                    th { "Device-level passcode reset" }
                    td { (supported(resets(pb::CredentialScope::Device))) }
                }
                tr {
                    th { "Work profile passcode reset" }
                    td { (supported(resets(pb::CredentialScope::WorkProfile))) }
                }
            }
            ul.rules #rules {
                @if !reset_policy {
                    li.warning #rule-no-policy {
                        strong { "No passcode policy is assigned to the "
                            (words::scope_name(reset_scope as i32)) ": a reset ends failed. " }
                        (NO_POLICY_RULE)
                    }
                } @else if !reset_token {
                    li.warning #rule-no-token {
                        "The device has not escrowed a reset token for its "
                        (words::scope_name(reset_scope as i32)) " yet: a reset ends failed until it does."
                    }
                }
                @for scope in &lock_scopes {
                    @if words::policy_of(device, *scope).is_none() && (*scope != reset_scope || reset_policy) {
                        li.warning {
                            "No passcode policy on the " (words::scope_name(*scope as i32)) ". "
                            (LOCK_POLICY_RULE)
                        }
                    }
                }
                li { (words::USER_EXPERIENCE) }
            }
        }
    }
}

fn supported(yes: bool) -> Markup {
    html! {
        @if yes {
            span.supported { "✓ supported" }
        } @else {
            span.unsupported { "✗ not supported" }
        }
    }
}

/// The live part of a device's page: online state, last check-in, and each credential store as
/// the device last reported it. The device page and its event stream both render it.
pub(crate) fn status(device: &pb::Device, now: u64) -> Markup {
    let mut scopes = vec![pb::CredentialScope::Device];
    if words::has_work_profile(device.ownership) {
        scopes.push(pb::CredentialScope::WorkProfile);
    }
    html! {
        h2 { "Status " (online(device.online)) }
        p { "Last check-in: " (seen(device.last_seen_ms, now)) }
        table #stores {
            thead { tr {
                th { "Credential store" } th { "Passcode" } th { "Locked" } th { "Reset token" }
                th { "Token escrowed" } th { "Passcode policy" } th { "Failed entries" }
            } }
            tbody {
                @for scope in scopes {
                    @let reported = device.stores.iter().find(|s| s.scope == scope as i32);
                    tr data-scope=(words::scope_value(scope)) {
                        th { (words::scope_name(scope as i32)) }
                        @if let Some(store) = reported {
                            td { (if store.wiped { "wiped" } else if store.has_passcode { "set" } else { "none" }) }
                            td { (if store.locked { "locked" } else { "unlocked" }) }
                            td.token-state { (words::token_state(store.token_state)) }
                        } @else {
                            td.muted colspan="3" { "not reported yet" }
                        }
                        td { (if device.escrowed_token_scopes.contains(&(scope as i32)) { "yes" } else { "no" }) }
                        td {
                            @if let Some(policy) = words::policy_of(device, scope) {
                                (words::policy_summary(policy))
                            } @else {
                                span.warning-text { "none assigned" }
                            }
                        }
                        td { (reported.map(|s| s.failed_attempts).unwrap_or(0)) }
                    }
                }
            }
        }
    }
}

fn actions_table(actions: &[pb::Action], now: u64) -> Markup {
    html! {
        table #actions {
            thead { tr {
                th { "Action" } th { "Store" } th { "State" } th { "Requested by" }
                th { "Requested" } th { "Passcode" } th { "Entered on the device" }
            } }
            tbody {
                @for action in actions {
                    tr data-action-id=(action.action_id) {
                        td { a href={ "/actions/" (action.action_id) } { (words::kind_name(action.kind)) } }
                        td { (words::scope_name(action.scope)) }
                        td { (badge(words::state_name(action.state))) }
                        td { (action.requested_by) }
                        td { time title=(utc(action.created_at_ms)) { (relative(now, action.created_at_ms)) } }
                        td {
                            @if action.passcode_visible_until_ms > now {
                                a href={ "/actions/" (action.action_id) } {
                                    "visible until " (utc(action.passcode_visible_until_ms))
                                }
                            } @else if words::is_reset(action) {
                                span.muted { "not shown" }
                            }
                        }
                        td {
                            @if action.user_entered_at_ms > 0 {
                                "entered at " time title=(utc(action.user_entered_at_ms)) {
                                    (time_of_day(action.user_entered_at_ms))
                                }
                            } @else if words::is_reset(action) && action.state == pb::ActionState::Done as i32 {
                                "not yet"
                            }
                        }
                    }
                }
            }
        }
    }
}
