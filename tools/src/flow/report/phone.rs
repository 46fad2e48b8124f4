//! A device's screen drawn as an SVG phone, the way its user would have seen it: the status bar
//! (the device's clock, online or in airplane mode), the notification shade with its
//! notifications, the lock screen (a closed or open padlock, the throttle countdown), and one
//! row per credential store (locked or not, passcode, token, failed attempts, wiped).

use super::super::check::token_name;
use super::junit::escape;
use droidfleet_proto::v1 as pb;
use std::fmt::Write as _;

const WIDTH: u32 = 210;
const HEIGHT: u32 = 380;
/// Characters per line of notification text at its font size.
const LINE_CHARS: usize = 30;
/// Characters per line of a notification's (bold, larger) title.
const TITLE_CHARS: usize = 22;

/// The phone for `screen` at the devices' time `now_ms`.
pub(crate) fn render(screen: &pb::Screen, now_ms: u64) -> String {
    let device_store = store(screen, pb::CredentialScope::Device);
    let locked = device_store.is_some_and(|s| s.locked);
    let (background, ink, soft) = if locked {
        ("#1f2a44", "#ffffff", "#b8c4dd")
    } else {
        ("#e7edf6", "#16202f", "#4a5870")
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="phone" data-device="{name}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{name}'s screen">"##,
        name = escape(&screen.name)
    );
    let _ = write!(
        svg,
        r##"<rect x="1" y="1" width="{}" height="{}" rx="30" fill="#111318"/><rect class="display" x="10" y="12" width="{}" height="{}" rx="22" fill="{background}"/>"##,
        WIDTH - 2,
        HEIGHT - 2,
        WIDTH - 20,
        HEIGHT - 24
    );
    // Status bar: the device's clock, the camera, the network.
    let _ = write!(
        svg,
        r##"<text x="26" y="32" font-size="11" font-weight="600" fill="{ink}">{clock}</text><circle cx="{mid}" cy="26" r="4" fill="#000"/>"##,
        clock = clock(now_ms),
        mid = WIDTH / 2
    );
    let _ = write!(
        svg,
        r##"<text class="network" x="{}" y="32" font-size="10" text-anchor="end" fill="{}">{}</text>"##,
        WIDTH - 26,
        if screen.connected { soft } else { "#e0a030" },
        if screen.connected {
            "● online"
        } else {
            "✈ airplane mode"
        },
    );

    let mut y = 46;
    for notification in &screen.notifications {
        y = notification_card(&mut svg, notification, y);
    }

    // The lock screen itself.
    let icon_y = y.max(60) + 20;
    padlock(&mut svg, WIDTH / 2, icon_y, locked, ink);
    let headline = if locked { "Locked" } else { "Unlocked" };
    let _ = write!(
        svg,
        r##"<text class="lock-state" x="{}" y="{}" font-size="15" font-weight="600" text-anchor="middle" fill="{ink}">{headline}</text>"##,
        WIDTH / 2,
        icon_y + 60
    );
    if let Some(status) = device_store {
        let prompt = prompt(status, now_ms);
        if !prompt.is_empty() {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="{soft}">{}</text>"##,
                WIDTH / 2,
                icon_y + 76,
                escape(&prompt)
            );
        }
    }

    // One row per credential store, from the bottom up.
    let rows: Vec<&pb::StoreStatus> = screen.stores.iter().collect();
    let mut row_y = HEIGHT - 22 - 58 * rows.len() as u32;
    for status in rows {
        store_row(&mut svg, status, row_y, now_ms, locked);
        row_y += 58;
    }
    svg.push_str("</svg>");
    svg
}

fn store(screen: &pb::Screen, scope: pb::CredentialScope) -> Option<&pb::StoreStatus> {
    screen.stores.iter().find(|s| s.scope == scope as i32)
}

/// HH:MM (UTC) of the devices' time.
fn clock(now_ms: u64) -> String {
    let minutes = (now_ms / 60_000) % (24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// What the lock screen asks of the user.
fn prompt(status: &pb::StoreStatus, now_ms: u64) -> String {
    if status.wiped {
        "Wiped after too many attempts".into()
    } else if status.throttled_until_ms > now_ms {
        format!(
            "Try again in {} s",
            (status.throttled_until_ms - now_ms).div_ceil(1000)
        )
    } else if status.locked && status.require_entry {
        "Enter the new passcode".into()
    } else if status.locked {
        "Enter passcode".into()
    } else {
        String::new()
    }
}

fn notification_card(svg: &mut String, notification: &pb::Notification, y: u32) -> u32 {
    let title = wrap(&notification.title, TITLE_CHARS);
    let lines = wrap(&notification.text, LINE_CHARS);
    let text_top = y + 8 + 13 * title.len() as u32;
    let height = text_top - y + 4 + 12 * lines.len() as u32;
    let _ = write!(
        svg,
        r##"<g class="notification"><rect x="18" y="{y}" width="{}" height="{height}" rx="10" fill="#ffffff" stroke="#c9d3e3"/><rect x="26" y="{}" width="10" height="10" rx="2" fill="#2f6fdf"/><text class="notification-title" x="42" y="{}" font-size="10.5" font-weight="700" fill="#16202f">"##,
        WIDTH - 36,
        y + 9,
        y + 18,
    );
    for (i, line) in title.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<tspan x="42" dy="{}">{}</tspan>"##,
            if i == 0 { 0 } else { 13 },
            escape(line)
        );
    }
    svg.push_str("</text>");
    for (i, line) in lines.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="26" y="{}" font-size="9.5" fill="#3b4658">{}</text>"##,
            text_top + 12 + 12 * i as u32,
            escape(line)
        );
    }
    svg.push_str("</g>");
    y + height + 6
}

/// A padlock centred on `x`, its body's top at `y + 14`; open when not locked.
fn padlock(svg: &mut String, x: u32, y: u32, locked: bool, ink: &str) {
    let (x, y) = (x as i64, y as i64);
    let shackle = if locked {
        format!("M{} {} v-8 a10 10 0 0 1 20 0 v8", x - 10, y + 14)
    } else {
        format!("M{} {} v-8 a10 10 0 0 1 20 0 v-4", x, y + 6)
    };
    let _ = write!(
        svg,
        r##"<g class="padlock {state}"><path d="{shackle}" fill="none" stroke="{ink}" stroke-width="4" stroke-linecap="round"/><rect x="{}" y="{}" width="30" height="24" rx="5" fill="{ink}"/></g>"##,
        x - 15,
        y + 14,
        state = if locked { "closed" } else { "open" }
    );
}

fn store_row(svg: &mut String, status: &pb::StoreStatus, y: u32, now_ms: u64, dark: bool) {
    let name = match pb::CredentialScope::try_from(status.scope) {
        Ok(pb::CredentialScope::WorkProfile) => "Work profile",
        _ => "Device",
    };
    let (fill, ink, soft) = if dark {
        ("#2b3a5c", "#ffffff", "#b8c4dd")
    } else {
        ("#ffffff", "#16202f", "#4a5870")
    };
    let state = if status.wiped {
        "wiped"
    } else if status.locked {
        "locked"
    } else {
        "unlocked"
    };
    let badge = match state {
        "wiped" => "#b3261e",
        "locked" => "#d08a00",
        _ => "#1e8e3e",
    };
    let _ = write!(
        svg,
        r##"<g class="store" data-scope="{name}" data-state="{state}"><rect x="18" y="{y}" width="{}" height="50" rx="9" fill="{fill}" stroke="{badge}"/><text x="28" y="{}" font-size="11" font-weight="700" fill="{ink}">{name}</text><rect x="{}" y="{}" width="58" height="15" rx="7" fill="{badge}"/><text x="{}" y="{}" font-size="9.5" font-weight="700" text-anchor="middle" fill="#ffffff">{state}</text>"##,
        WIDTH - 36,
        y + 16,
        WIDTH - 84,
        y + 6,
        WIDTH - 55,
        y + 17
    );
    let mut facts = vec![
        if status.has_passcode {
            "passcode set"
        } else {
            "no passcode"
        }
        .to_string(),
        format!("token {}", token_name(status.token_state)),
    ];
    if status.failed_attempts > 0 {
        facts.push(format!("{} failed", status.failed_attempts));
    }
    let mut second = Vec::new();
    if status.throttled_until_ms > now_ms {
        second.push(format!(
            "retry in {} s",
            (status.throttled_until_ms - now_ms).div_ceil(1000)
        ));
    }
    if status.require_entry {
        second.push("new passcode to enter".to_string());
    }
    let _ = write!(
        svg,
        r##"<text x="28" y="{}" font-size="9.5" fill="{soft}">{}</text>"##,
        y + 31,
        escape(&facts.join(" · "))
    );
    if !second.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="28" y="{}" font-size="9.5" fill="{soft}">{}</text>"##,
            y + 43,
            escape(&second.join(" · "))
        );
    }
    svg.push_str("</g>");
}

/// Words in lines of at most `width` characters (a longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen() -> pb::Screen {
        pb::Screen {
            name: "alice".into(),
            connected: false,
            stores: vec![
                pb::StoreStatus {
                    scope: pb::CredentialScope::Device as i32,
                    has_passcode: true,
                    locked: false,
                    token_state: pb::TokenState::Active as i32,
                    ..Default::default()
                },
                pb::StoreStatus {
                    scope: pb::CredentialScope::WorkProfile as i32,
                    has_passcode: true,
                    locked: true,
                    require_entry: true,
                    failed_attempts: 5,
                    throttled_until_ms: 31_000,
                    token_state: pb::TokenState::Pending as i32,
                    ..Default::default()
                },
            ],
            notifications: vec![pb::Notification {
                id: "enter-new-passcode/work_profile".into(),
                scope: pb::CredentialScope::WorkProfile as i32,
                title: "Enter your new work passcode".into(),
                text: "Your IT admin reset your work passcode. Enter the new passcode <now>."
                    .into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_phone_shows_the_shade_each_store_and_the_network() {
        let svg = render(&screen(), 1_000);
        assert!(svg.starts_with("<svg class=\"phone\" data-device=\"alice\""));
        assert!(svg.ends_with("</svg>"));
        assert!(
            svg.contains(">Enter your new work</tspan><tspan x=\"42\" dy=\"13\">passcode</tspan>")
        );
        assert!(svg.contains("&lt;now&gt;"), "text is escaped: {svg}");
        assert!(svg.contains(r#"data-scope="Device" data-state="unlocked""#));
        assert!(svg.contains(r#"data-scope="Work profile" data-state="locked""#));
        assert!(svg.contains("retry in 30 s"));
        assert!(svg.contains("5 failed"));
        assert!(svg.contains("token pending"));
        assert!(svg.contains("airplane mode"));
        assert!(svg.contains("padlock open"), "the device store is open");
    }

    #[test]
    fn a_locked_device_shows_a_closed_padlock_and_its_countdown() {
        let mut screen = screen();
        screen.stores[0].locked = true;
        screen.stores[0].throttled_until_ms = 61_000;
        let svg = render(&screen, 1_000);
        assert!(svg.contains("padlock closed"));
        assert!(svg.contains("Try again in 60 s"));
    }

    #[test]
    fn long_text_wraps_on_words() {
        assert_eq!(
            wrap("Your IT admin reset your work passcode.", 16),
            vec!["Your IT admin", "reset your work", "passcode."]
        );
    }
}
