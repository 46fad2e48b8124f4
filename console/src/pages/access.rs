//! Roles and access: who the caller is and what it holds (GetCaller), and for a caller that
//! holds Roles.Manage for every group, the roles, the principals with their assignments, and the
//! forms that assign and unassign roles (AssignRole, UnassignRole; the control plane refuses a
//! change that would leave nobody able to manage roles).

use super::{Section, SignedIn, State, csrf_field, frame};
use crate::error::PageError;
use axum::Form;
use axum::extract::State as Shared;
use axum::response::Redirect;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use maud::{Markup, html};

const ROLES_MANAGE: &str = "Roles.Manage";
/// The page shows every role and principal, following the lists' pages, at most this many:
/// far more pages of the largest size than a tenant has principals.
const MAX_PAGES: usize = 1000;
/// The largest page ListRoles and ListPrincipals serve.
const PAGE_SIZE: i32 = 1000;

#[derive(serde::Deserialize)]
pub(crate) struct AssignmentForm {
    csrf: String,
    principal: String,
    role: String,
    /// Empty: every group.
    #[serde(default)]
    group: String,
}

fn group_words(group: &str) -> &str {
    if group.is_empty() {
        "every group"
    } else {
        group
    }
}

pub(crate) async fn page(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
) -> Result<Markup, PageError> {
    let caller = state
        .api
        .get_caller(signed_in.request(pb::GetCallerRequest::default()))
        .await?
        .into_inner();
    let manages = caller.permissions.iter().any(|p| p == ROLES_MANAGE);
    let (mut roles, mut principals) = (Vec::new(), Vec::new());
    if manages {
        let mut page_token = String::new();
        for _ in 0..MAX_PAGES {
            let request = pb::ListRolesRequest {
                page_size: PAGE_SIZE,
                page_token,
            };
            let page = state
                .api
                .list_roles(signed_in.request(request))
                .await?
                .into_inner();
            roles.extend(page.roles);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
        }
        let mut page_token = String::new();
        for _ in 0..MAX_PAGES {
            let request = pb::ListPrincipalsRequest {
                page_size: PAGE_SIZE,
                page_token,
            };
            let page = state
                .api
                .list_principals(signed_in.request(request))
                .await?
                .into_inner();
            principals.extend(page.principals);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
        }
    }
    let body = html! {
        h1 { "Roles and access" }
        section.card #you {
            h2 { "You: " (caller.name) }
            ul {
                @for assignment in &caller.assignments {
                    li { strong { (assignment.role) } " for " (group_words(&assignment.group)) }
                }
            }
            p { "Permissions you hold somewhere: "
                @for (i, permission) in caller.permissions.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (permission) }
                }
            }
        }
        @if manages {
            section.card #roles {
                h2 { "Roles" }
                table {
                    thead { tr { th { "Role" } th { "Permissions" } th { "Kind" } } }
                    tbody {
                        @for role in &roles {
                            tr {
                                td { (role.name) }
                                td { (role.permissions.join(", ")) }
                                td { (if role.built_in { "built in" } else { "custom" }) }
                            }
                        }
                    }
                }
            }
            section.card #principals {
                h2 { "Principals and their assignments" }
                table {
                    thead { tr { th { "Principal" } th { "Role" } th { "Group" } th {} } }
                    tbody {
                        @for principal in &principals {
                            @for assignment in &principal.assignments {
                                tr {
                                    td { (principal.name) }
                                    td { (assignment.role) }
                                    td { (group_words(&assignment.group)) }
                                    td {
                                        form method="post" action="/access/unassign" {
                                            (csrf_field(&signed_in))
                                            input type="hidden" name="principal" value=(principal.name);
                                            input type="hidden" name="role" value=(assignment.role);
                                            input type="hidden" name="group" value=(assignment.group);
                                            button.link type="submit" { "Unassign" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.filters #assign method="post" action="/access/assign" {
                    (csrf_field(&signed_in))
                    select name="principal" aria-label="Principal" {
                        @for principal in &principals { option { (principal.name) } }
                    }
                    select name="role" aria-label="Role" {
                        @for role in &roles { option { (role.name) } }
                    }
                    input type="text" name="group" placeholder="Group (empty: every group)"
                        aria-label="Group";
                    button type="submit" { "Assign role" }
                }
            }
        } @else {
            p.muted #roles-refused {
                "Reading and changing roles needs Roles.Manage, assigned for every group."
            }
        }
    };
    Ok(frame(&signed_in, Section::Access, "Roles and access", body))
}

pub(crate) async fn assign(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Form(form): Form<AssignmentForm>,
) -> Result<Redirect, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    state
        .api
        .assign_role(signed_in.request(pb::RoleAssignmentRequest {
            principal: form.principal,
            role: form.role,
            group: form.group.trim().to_string(),
        }))
        .await?;
    Ok(Redirect::to("/access"))
}

pub(crate) async fn unassign(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Form(form): Form<AssignmentForm>,
) -> Result<Redirect, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    state
        .api
        .unassign_role(signed_in.request(pb::RoleAssignmentRequest {
            principal: form.principal,
            role: form.role,
            group: form.group,
        }))
        .await?;
    Ok(Redirect::to("/access"))
}
