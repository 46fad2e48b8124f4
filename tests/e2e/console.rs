//! The web console in a real headless Chromium: a Help Desk Operator signs in, finds a BYOD
//! device, presses Reset passcode, watches the action reach done, shows the passcode, and sees
//! "entered" appear once the user (played through the harness) types it; a Read Only Operator
//! finds no reset button and is refused when it posts the form anyway. Neither flow leaves a
//! secret in an address, a cookie a script can read, or a page that does not show it on purpose.
//!
//! `DROIDFLEET_SCREENSHOTS=docs cargo test --test e2e console::` also writes the README's
//! pictures of the console.

use crate::support::{Admin, Browser, Console, World, password_policy};
use droidfleet_agent::device::{Build, Ownership};
use droidfleet_control_plane::clock::DAY;
use droidfleet_proto::v1 as pb;
use fantoccini::Locator;
use pb::CredentialScope::{Device as DEVICE, WorkProfile as WORK};
use std::sync::Arc;

const DEVICE_PIN: &str = "2580";
const WORK_PASSWORD: &str = "orchid42";

/// A world with a BYOD phone ready for a work-profile reset (passcodes set, token escrowed, a
/// password policy assigned), a kiosk without any policy, and a console over its control plane.
async fn setup() -> (World, Console, String) {
    let mut world = World::start(&[
        ("alice-phone", Ownership::Byod),
        ("lobby-kiosk", Ownership::Cosu),
    ])
    .await;
    let id = world.device_id("alice-phone").await;
    world
        .set_passcode("alice-phone", DEVICE, "", DEVICE_PIN)
        .await;
    world
        .set_passcode("alice-phone", WORK, DEVICE_PIN, WORK_PASSWORD)
        .await;
    world.admin.wait_escrowed(&id, WORK).await;
    world
        .admin
        .assign_policy(&id, WORK, password_policy(8))
        .await;
    let console = Console::start(world.control_plane.clone(), Arc::new(world.clock.clone())).await;
    (world, console, id)
}

/// Signs in through the form with `token`, and lands on the device list.
async fn sign_in(browser: &Browser, console: &Console, token: &str) {
    browser.client.goto(&console.url("/devices")).await.unwrap();
    // Not signed in yet: the console sends the browser to its sign-in form.
    browser.wait_for("input#token").await;
    assert!(
        browser.client.current_url().await.unwrap().path() == "/sign-in",
        "the device list needs a session"
    );
    browser
        .client
        .find(Locator::Css("input#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    browser.click("form button[type=submit]").await;
    browser.wait_for("table#devices").await;
}

/// Every address the browser was at must be free of `secrets`.
fn assert_clean_url(url: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!url.contains(secret), "a secret is in the address {url}");
    }
}

#[tokio::test]
async fn a_help_desk_operator_resets_a_byod_passcode_and_sees_it_entered() {
    let (mut world, console, alice) = setup().await;
    let helpdesk = world
        .admin
        .principal("helpdesk", &["Help Desk Operator"])
        .await;
    let token = helpdesk.token.clone().unwrap();
    let browser = Browser::start().await;
    sign_in(&browser, &console, &token).await;
    assert_eq!(browser.text("#principal").await, "helpdesk");
    let session_cookie = browser.client.get_named_cookie("df_session").await.unwrap();
    assert_eq!(session_cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", session_cookie.same_site()), "Some(Strict)");
    let script_sees = browser
        .client
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(script_sees, "", "no script can read the session cookie");

    // Devices > All devices: search for the phone and choose it.
    browser
        .client
        .find(Locator::Css("input[name=search]"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    browser.click("#device-filters button[type=submit]").await;
    browser
        .wait_for(&format!("tr[data-device-id='{alice}']"))
        .await;
    let rows = browser
        .client
        .find_all(Locator::Css("table#devices tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the search leaves the one phone");
    browser.screenshot("console-device-list").await;
    browser.click(&format!("a[href='/devices/{alice}']")).await;
    browser.wait_for("#device-name").await;
    assert_eq!(browser.text("#device-name").await, "alice-phone");
    assert!(
        browser
            .text("#enrollment-type")
            .await
            .contains("personally-owned work profile (BYOD)")
    );
    let build = Build::default();
    assert_eq!(
        browser.text("#android").await,
        format!(
            "API level {}, maker profile {}",
            build.api_level.get(),
            build.profile.name()
        ),
        "the Android the phone reported in its Hello"
    );
    assert_eq!(
        browser
            .text("#stores tr[data-scope=work_profile] .token-state")
            .await,
        "active"
    );
    assert!(
        !browser.has("#rule-no-policy").await,
        "the work profile has its policy"
    );
    let device_page = browser.html().await;

    // … > Reset passcode.
    browser.click("#actions-menu summary").await;
    browser.click("#reset-passcode").await;
    browser.wait_for("#action-state").await;
    let url = browser.client.current_url().await.unwrap();
    let action_id = url
        .path()
        .strip_prefix("/actions/")
        .expect("the reset shows its action")
        .to_string();
    // The state follows the action live: pending → active → done, with no reload.
    browser.wait_for("#action-state.badge.done").await;
    assert!(browser.has("#user-entered[data-entered=no]").await);
    let action_page = browser.html().await;

    // Show passcode: the reveal panel, with its seven days.
    browser.click("#show-passcode").await;
    browser.wait_for("#passcode").await;
    let passcode = browser.text("#passcode").await;
    let action = world.admin.action(&action_id).await;
    assert_eq!(action.state, pb::ActionState::Done as i32);
    assert_eq!(
        action.passcode_visible_until_ms,
        action.created_at_ms + 7 * DAY
    );
    assert!(
        browser
            .text("#visible-until")
            .await
            .contains(&droidfleet_console::layout::utc(
                action.passcode_visible_until_ms
            )),
        "the panel says until when the passcode is shown"
    );
    assert_eq!(
        world.admin.reveal(&action_id).await.unwrap(),
        passcode,
        "the console shows the passcode the reset set"
    );

    // The user types it on the phone; the console, still on this page, sees it entered.
    assert!(world.enter("alice-phone", WORK, &passcode).await);
    browser.wait_for("#user-entered[data-entered=yes]").await;
    assert!(browser.text("#user-entered").await.contains("entered"));
    browser.screenshot("console-passcode-entered").await;

    // The passcode was only ever in the reveal panel's answer: not in an address, not in the
    // device page or the action page as they are served without a reveal.
    assert_clean_url(url.as_str(), &[&passcode, &token]);
    browser
        .client
        .goto(&console.url(&format!("/actions/{action_id}")))
        .await
        .unwrap();
    browser.wait_for("#user-entered[data-entered=yes]").await;
    let action_page_again = browser.html().await;
    browser
        .client
        .goto(&console.url(&format!("/devices/{alice}")))
        .await
        .unwrap();
    browser.wait_for("#device-name").await;
    browser.click("#actions-menu summary").await;
    browser.wait_for("#reset-passcode").await;
    browser.screenshot("console-device").await;
    let device_page_again = browser.html().await;
    for (what, html) in [
        ("device page", &device_page),
        ("action page", &action_page),
        ("action page after the reveal", &action_page_again),
        ("device page after the reveal", &device_page_again),
    ] {
        assert!(!html.contains(&passcode), "the {what} holds the passcode");
        assert!(!html.contains(&token), "the {what} holds the admin token");
    }
    assert!(
        device_page_again.contains("visible until"),
        "the device page says the passcode is there to be shown"
    );

    // Every step was an admin call of the helpdesk principal, audited as the gRPC API audits it.
    let by_helpdesk = |events: Vec<pb::AuditEvent>| {
        events
            .into_iter()
            .filter(|e| e.principal == "helpdesk" && e.result == "ok")
            .count()
    };
    assert_eq!(by_helpdesk(world.admin.audit("ResetPasscode").await), 1);
    assert_eq!(by_helpdesk(world.admin.audit("RevealPasscode").await), 1);
    assert!(by_helpdesk(world.admin.audit("SearchDevices").await) >= 2);
    assert!(by_helpdesk(world.admin.audit("WatchAction").await) >= 1);
    browser.close().await;
    console.stop().await;
}

#[tokio::test]
async fn a_read_only_operator_finds_no_reset_button_and_is_refused_anyway() {
    let (mut world, console, alice) = setup().await;
    let reader: Admin = world
        .admin
        .principal("auditor", &["Read Only Operator"])
        .await;
    let browser = Browser::start().await;
    sign_in(&browser, &console, reader.token.as_deref().unwrap()).await;
    browser
        .client
        .goto(&console.url(&format!("/devices/{alice}")))
        .await
        .unwrap();
    browser.wait_for("#device-actions").await;
    assert!(!browser.has("#reset-passcode").await, "no reset button");
    assert!(!browser.has("#actions-menu").await, "no action menu at all");
    assert!(
        browser
            .text("#no-actions")
            .await
            .contains("RemoteTasks.ResetPasscode")
    );

    // The form posted anyway, with the session's own CSRF token: the admin API refuses it.
    let answer = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const csrf = document.querySelector('input[name=csrf]').value; \
             fetch(arguments[0], { method: 'POST', body: new URLSearchParams({ csrf }) }) \
               .then(async r => done([r.status, await r.text()]));",
            vec![serde_json::json!(format!("/devices/{alice}/reset"))],
        )
        .await
        .unwrap();
    assert_eq!(answer[0], 403, "{answer}");
    let refusal = answer[1].as_str().unwrap();
    assert!(
        refusal.contains("RemoteTasks.ResetPasscode"),
        "the refusal names the missing permission: {refusal}"
    );
    assert!(world.admin.actions(&alice).await.unwrap().is_empty());
    let denied: Vec<_> = world
        .admin
        .audit("ResetPasscode")
        .await
        .into_iter()
        .filter(|e| e.principal == "auditor")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].result, "PERMISSION_DENIED");
    assert_eq!(denied[0].device_id, alice);
    browser.close().await;
    console.stop().await;
}
