//! A device's screen as the walls draw it: small, as a tile of the grid linking to the device's
//! page, and in full on that page. Only what a phone's lock screen shows: lock states and
//! notifications, never a passcode or a token.

use droidfleet_agent::device::{Scope, TokenState};
use droidfleet_agent::fleet::Screen;
use droidfleet_console::layout::badge;
use maud::{Markup, html};

/// How a store's lock reads, and its CSS class.
fn lock_words(screen: &Screen, scope: Scope) -> Option<(&'static str, &'static str)> {
    let store = screen.stores.iter().find(|s| s.scope == scope)?;
    Some(if store.wiped {
        ("wiped", "locked")
    } else if store.locked {
        ("locked", "locked")
    } else {
        ("unlocked", "unlocked")
    })
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "Device",
        Scope::WorkProfile => "Work profile",
    }
}

fn token_words(state: TokenState) -> &'static str {
    match state {
        TokenState::None => "none",
        TokenState::Pending => "pending",
        TokenState::Active => "active",
    }
}

/// A phone's lock screen, small, linking to `/devices/NAME`: name, `state` as a badge, each
/// store's lock, its notifications, and whether it is offline.
pub(crate) fn screen_tile(screen: &Screen, state: &str) -> Markup {
    html! {
        a.screen.offline[!screen.connected] href={ "/devices/" (screen.name) } data-device=(screen.name) {
            div.name { (screen.name) " · " (screen.ownership.as_str().to_uppercase()) }
            (badge(state))
            @for scope in [Scope::Device, Scope::WorkProfile] {
                @if let Some((words, class)) = lock_words(screen, scope) {
                    div class={ "lock " (class) } { (scope_words(scope)) ": " (words) }
                }
            }
            @for note in &screen.notifications {
                div.note { (note.title) }
            }
            @if !screen.connected { div.lock { "offline" } }
        }
    }
}

/// A device's screen in full: online state, each store's lock, passcode set or not, reset token
/// state and failed entries, its notifications and its control-plane id.
pub(crate) fn screen_card(screen: &Screen) -> Markup {
    html! {
        section.card #device-screen {
            h2 { "Screen " (badge(if screen.connected { "online" } else { "offline" })) }
            table {
                thead { tr { th { "Store" } th { "Lock" } th { "Passcode" } th { "Reset token" } th { "Failed entries" } } }
                tbody {
                    @for store in &screen.stores {
                        tr {
                            th { (scope_words(store.scope)) }
                            @let lock = lock_words(screen, store.scope).map(|(w, _)| w).unwrap_or("");
                            td data-store=(scope_words(store.scope)) data-lock=(lock) { (lock) }
                            td { (if store.has_passcode { "set" } else { "none" }) }
                            td { (token_words(store.token_state)) }
                            td { (store.failed_attempts) }
                        }
                    }
                }
            }
            @for note in &screen.notifications {
                p.note-full { strong { (note.title) } " " (note.text) }
            }
            @if let Some(id) = &screen.device_id {
                p.muted { "Control-plane id " code { (id) } }
            }
        }
    }
}
