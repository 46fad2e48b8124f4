//! Tests of what survives a restart, and that no secret reaches the persisted state or `Debug`
//! output.

use super::*;

#[test]
fn persisted_state_holds_no_secret_and_restores_as_a_boot() {
    let (mut device, rng, token) = cope_ready();
    device.set_enrollment(Enrollment {
        device_id: "dev-1".into(),
        key: DeviceKey::new([5; 32]),
        command_public_key: vec![1; 32],
    });
    device
        .reset_with_token(
            Scope::WorkProfile,
            &token,
            &pass("Zq7!wX3k"),
            REQUIRE_ENTRY,
            "cmd-9",
            &rng,
        )
        .unwrap();
    let pending = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
    let device_token = EscrowToken::new(vec![0x5a; 32]);
    device
        .set_escrow_token(Scope::Device, device_token.clone())
        .unwrap();
    device.set_policy(Scope::Device, Some(min_six())).unwrap();

    let json = serde_json::to_string(&device.to_persisted()).unwrap();
    for secret in ["2580", "Zq7!wX3k", "quarterly report"] {
        assert!(!json.contains(secret), "{secret} leaked into {json}");
    }
    for bytes in [token.expose(), pending.expose(), device_token.expose()] {
        for rendering in renderings(bytes) {
            assert!(!json.contains(&rendering), "a token leaked into {json}");
        }
    }

    let mut restored = Device::from_persisted(serde_json::from_str(&json).unwrap(), KDF).unwrap();
    assert_eq!(restored.name(), "phone");
    assert_eq!(restored.ownership(), Ownership::Cope);
    assert_eq!(restored.enrollment().unwrap().device_id, "dev-1");
    assert_eq!(restored.enrollment().unwrap().key.expose(), &[5; 32]);
    assert_eq!(restored.policy(Scope::Device).unwrap(), Some(&min_six()));
    let statuses = restored.statuses(NOW);
    assert!(statuses.iter().all(|s| s.locked));
    assert!(statuses.iter().all(|s| s.token_state == TokenState::None));
    assert!(status(&restored, Scope::WorkProfile).require_entry);
    assert_eq!(restored.notifications().len(), 1);
    assert_eq!(
        enter(&mut restored, Scope::WorkProfile, "Zq7!wX3k", NOW),
        EntryOutcome::Unlocked
    );
    assert_eq!(
        restored
            .read_user_data(Scope::WorkProfile, "mail")
            .unwrap()
            .unwrap(),
        b"quarterly report"
    );
}

#[test]
fn from_persisted_rejects_inconsistent_state() {
    let (device, _, _) = cope_ready();
    let mut persisted = device.to_persisted();
    persisted.ownership = Ownership::Cosu;
    assert!(matches!(
        Device::from_persisted(persisted, KDF),
        Err(DeviceError::CorruptState(_))
    ));
    let mut persisted = device.to_persisted();
    persisted.format = 99;
    assert!(matches!(
        Device::from_persisted(persisted, KDF),
        Err(DeviceError::CorruptState(_))
    ));
    let mut persisted = device.to_persisted();
    persisted.stores.reverse();
    assert!(matches!(
        Device::from_persisted(persisted, KDF),
        Err(DeviceError::CorruptState(_))
    ));
}

#[test]
fn debug_output_holds_no_secret() {
    let (mut device, rng, token) = cosu_ready();
    device.set_enrollment(Enrollment {
        device_id: "dev-1".into(),
        key: DeviceKey::new([5; 32]),
        command_public_key: vec![1; 32],
    });
    device
        .reset_with_token(
            Scope::Device,
            &token,
            &pass("Zq7!wX3k"),
            REQUIRE_ENTRY,
            "c",
            &rng,
        )
        .unwrap();
    // The rotated token sits in the outbox until taken.
    let shown = format!("{device:?}");
    let rotated = escrowed(&device.take_events(), Scope::Device).unwrap();
    for secret in ["2580", "Zq7!wX3k", "BQUF", "[5, 5", "groceries"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    for bytes in [token.expose(), rotated.expose()] {
        for rendering in renderings(bytes) {
            assert!(!shown.contains(&rendering), "a token in {shown}");
        }
    }
    assert!(shown.contains("<redacted>"));
    let command = Command {
        command_id: "c".into(),
        traceparent: None,
        device_id: "d".into(),
        sequence: 1,
        not_after_ms: 0,
        kind: CommandKind::ResetPasscode {
            scope: Scope::Device,
            new_passcode: pass("Zq7!wX3k"),
            escrow_token: token.clone(),
            require_entry: true,
            lock_now: false,
        },
    };
    let shown = format!("{command:?}");
    assert!(!shown.contains("Zq7!wX3k"));
    assert!(
        renderings(token.expose())
            .iter()
            .all(|r| !shown.contains(r))
    );
}
