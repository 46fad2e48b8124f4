//! Devices: enrollment, an admin's explicit re-enrollment, reading and listing devices as a caller
//! may see them, and assigning passcode policies.

use super::access::{ASSIGN_POLICY, RE_ENROLL, READ};
use super::paging::{List, Listing, PageRequest, listing, page_token};
use super::validation::{
    MAX_ENROLLMENT_USES, MAX_ID_LEN, MAX_WATCHED_DEVICES, check_credential_text,
    check_enrollment_ttl, check_id, check_policy, check_text,
};
use super::{ControlPlane, ServiceError};
use crate::clock::Millis;
use crate::crypto::sha256;
use crate::model::{ActionState, Device, Ownership, PasscodePolicy, Permission, Scope};
use crate::rbac;
use crate::secret::BearerToken;
use crate::store::{
    AuthenticatedPrincipal, DeviceCursor, DeviceKey, DeviceQuery, ListedDevice, NewDevice,
    NewEnrollmentToken, PageStart, SearchText,
};

/// A request for an enrollment token, already parsed from the wire.
#[derive(Debug, Default)]
pub(crate) struct EnrollmentTokenRequest {
    /// 0 means 1.
    pub(crate) max_uses: u32,
    /// `None` means one hour.
    pub(crate) ttl: Option<Millis>,
    /// `None` means [`rbac::DEFAULT_GROUP`].
    pub(crate) group: Option<String>,
}

/// A device search (one page of a filtered list), already parsed from the wire.
#[derive(Debug, Default)]
pub(crate) struct DeviceSearch {
    /// Its token comes from a previous [`DevicePage`] with the same filters.
    pub(crate) page: PageRequest,
    pub(crate) search: Option<String>,
    pub(crate) ownership: Option<Ownership>,
    /// `None` means every group the caller may see.
    pub(crate) group: Option<String>,
    pub(crate) latest_action_state: Option<ActionState>,
}

/// One page of a device search, with the tokens of its neighbours.
#[derive(Debug)]
pub(crate) struct DevicePage {
    pub(crate) devices: Vec<ListedDevice>,
    /// `None` on the last page.
    pub(crate) next_page_token: Option<String>,
    /// `None` on the first page.
    pub(crate) previous_page_token: Option<String>,
}

/// Device ids are `dev_` and 32 hex digits (`KeyRing::new_id`): a search of that shape is an id.
fn is_device_id(text: &str) -> bool {
    text.strip_prefix("dev_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl DeviceSearch {
    /// The search and filters as its page tokens bind them.
    fn filters(&self) -> [String; 4] {
        [
            self.search.clone().unwrap_or_default(),
            self.ownership
                .map(|o| o.as_str().to_string())
                .unwrap_or_default(),
            self.group.clone().unwrap_or_default(),
            self.latest_action_state
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        ]
    }
}

/// A SearchDevices page token: which side of which device the page starts, for these filters.
fn search_token(filters: &[&str], after: bool, device: &Device) -> String {
    let side = if after { "a" } else { "b" };
    page_token(
        List::DeviceSearch,
        filters,
        &[side, &device.display_name, &device.id],
    )
}

fn search_start(page: &PageRequest, filters: &[&str]) -> Result<PageStart, ServiceError> {
    let Some(parts) = page.position(List::DeviceSearch, filters)? else {
        return Ok(PageStart::First);
    };
    let invalid =
        || ServiceError::invalid("page_token", "does not hold a position in SearchDevices");
    let [side, display_name, id] = parts.as_slice() else {
        return Err(invalid());
    };
    check_id("page_token", id).map_err(|_| invalid())?;
    let cursor = DeviceCursor {
        display_name: display_name.clone(),
        id: id.clone(),
    };
    match side.as_str() {
        "a" => Ok(PageStart::After(cursor)),
        "b" => Ok(PageStart::Before(cursor)),
        _ => Err(invalid()),
    }
}

impl ControlPlane {
    /// Creates an enrollment token for a group the caller may enroll devices into.
    pub(crate) async fn create_enrollment_token(
        &self,
        caller: &AuthenticatedPrincipal,
        request: EnrollmentTokenRequest,
    ) -> Result<(BearerToken, Millis, u32, String), ServiceError> {
        let max_uses = if request.max_uses == 0 {
            1
        } else {
            request.max_uses
        };
        if max_uses > MAX_ENROLLMENT_USES {
            return Err(ServiceError::invalid(
                "max_uses",
                format!("must be at most {MAX_ENROLLMENT_USES}"),
            ));
        }
        let ttl = check_enrollment_ttl(request.ttl)?;
        let group = match request.group {
            Some(group) => {
                rbac::validate_group_name(&group)
                    .map_err(|problem| ServiceError::invalid("group", problem))?;
                group
            }
            None => rbac::DEFAULT_GROUP.to_string(),
        };
        caller
            .grants
            .authorize_group(&group, &[Permission::EnrollmentCreate])?;
        let secret = BearerToken::new(self.keys.new_credential("dfe_")?);
        let expires_at = self.now() + ttl;
        self.store
            .create_enrollment_token(NewEnrollmentToken {
                hash: sha256(secret.expose().as_bytes()),
                max_uses,
                expires_at,
                created_by: caller.name.clone(),
                group: group.clone(),
            })
            .await?;
        Ok((self.handed_token(&secret), expires_at, max_uses, group))
    }

    /// Starts the explicit re-enrollment of a known device: revokes its key now (ending any open
    /// session) and returns a single-use enrollment token bound to it.
    pub(crate) async fn reenroll_device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        ttl: Option<Millis>,
    ) -> Result<(BearerToken, Millis), ServiceError> {
        let ttl = check_enrollment_ttl(ttl)?;
        let device = self.device_for(caller, device_id, &RE_ENROLL).await?;
        let secret = BearerToken::new(self.keys.new_credential("dfe_")?);
        let expires_at = self.now() + ttl;
        self.store
            .reenroll_device(
                &device.id,
                NewEnrollmentToken {
                    hash: sha256(secret.expose().as_bytes()),
                    max_uses: 1,
                    expires_at,
                    created_by: caller.name.clone(),
                    group: device.group.clone(),
                },
            )
            .await?;
        // The commit ended the device's open session.
        tracing::info!(device_id = %device.id, by = %caller.name, "device key revoked for re-enrollment");
        Ok((self.handed_token(&secret), expires_at))
    }

    /// The enrollment token as handed out: its secret, then the CA fingerprint the device pins
    /// (when serving TLS). Only the secret's hash is stored.
    fn handed_token(&self, secret: &BearerToken) -> BearerToken {
        match &self.enrollment_pin {
            Some(pin) => BearerToken::new(format!("{}.{pin}", secret.expose())),
            None => secret.clone(),
        }
    }

    /// Enrolls a device and binds `public_key` to it: its sessions open with a proof by the
    /// private key. A re-enrollment token gives a known device its id back, with the new key.
    /// `enrollment_token` is the token's secret, without the CA fingerprint the device pinned.
    pub(crate) async fn enroll(
        &self,
        enrollment_token: &BearerToken,
        ownership: Ownership,
        display_name: &str,
        public_key: &[u8],
    ) -> Result<Device, ServiceError> {
        check_credential_text("enrollment_token", enrollment_token)?;
        check_text("display_name", display_name, MAX_ID_LEN)?;
        let public_key: [u8; 32] = public_key.try_into().map_err(|_| {
            ServiceError::invalid(
                "device_public_key",
                format!(
                    "must be a 32-byte Ed25519 public key, not {} bytes",
                    public_key.len()
                ),
            )
        })?;
        self.check_disk_reserve()?;
        let device = NewDevice {
            id: self.keys.new_id("dev_")?,
            display_name: display_name.to_string(),
            ownership,
            public_key,
            enrolled_at: self.now(),
        };
        let enrolled = self
            .store
            .enroll_device(sha256(enrollment_token.expose().as_bytes()), device)
            .await?;
        let device = enrolled.device;
        tracing::info!(
            device_id = %device.id,
            ownership = %ownership,
            group = %device.group,
            re_enrolled = enrolled.re_enrolled,
            "device enrolled"
        );
        Ok(device)
    }

    /// The device and the public key its session proofs must verify with; `None` for an
    /// unknown device or one without a key (enrolled before keys, or revoked for re-enrollment).
    pub(crate) fn device_with_key(&self, device_id: &str) -> Option<(Device, [u8; 32])> {
        self.hot.device_with_key(device_id)
    }

    /// The device as stored, for its own session (no caller to check), from the hot state.
    pub(crate) async fn device_record(&self, device_id: &str) -> Result<Device, ServiceError> {
        self.hot
            .device(device_id)
            .ok_or_else(|| ServiceError::NotFound {
                what: "device",
                id: device_id.to_string(),
            })
    }

    /// A device the caller may see.
    pub(crate) async fn device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
    ) -> Result<Device, ServiceError> {
        self.device_for(caller, device_id, &READ).await
    }

    /// The devices of a WatchDevices request, each one the caller may see, in the request's order.
    pub(crate) fn watched_devices(
        &self,
        caller: &AuthenticatedPrincipal,
        device_ids: &[String],
    ) -> Result<Vec<Device>, ServiceError> {
        if device_ids.is_empty() || device_ids.len() > MAX_WATCHED_DEVICES {
            return Err(ServiceError::invalid(
                "device_ids",
                format!("give 1 to {MAX_WATCHED_DEVICES} device ids"),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(device_ids.len());
        let mut devices = Vec::with_capacity(device_ids.len());
        for id in device_ids {
            check_id("device_ids", id)?;
            if !seen.insert(id.as_str()) {
                return Err(ServiceError::invalid(
                    "device_ids",
                    format!("{id:?} is listed twice"),
                ));
            }
            devices.push(self.device_visible(caller, id, &READ)?);
        }
        Ok(devices)
    }

    /// A page of the devices the caller may see, of one group or of all.
    pub(crate) async fn devices(
        &self,
        caller: &AuthenticatedPrincipal,
        group: Option<&str>,
        page: &PageRequest,
    ) -> Result<Listing<Device>, ServiceError> {
        if let Some(group) = group {
            rbac::validate_group_name(group)
                .map_err(|problem| ServiceError::invalid("group", problem))?;
        }
        let filters = [group.unwrap_or("")];
        let query = page.query::<DeviceKey>(List::Devices, &filters)?;
        let groups = Self::visible_groups(caller, group);
        let devices = self.store.list_devices(groups.as_ref(), &query).await?;
        Ok(listing(List::Devices, &filters, devices))
    }

    /// One page of the devices the caller may see that match `request`, filtered and paged by
    /// the store, with the tokens of the pages before and after it.
    pub(crate) async fn search_devices(
        &self,
        caller: &AuthenticatedPrincipal,
        request: DeviceSearch,
    ) -> Result<DevicePage, ServiceError> {
        let size = request.page.size(List::DeviceSearch)?;
        let filters = request.filters();
        let filters = filters.each_ref().map(String::as_str);
        let start = search_start(&request.page, &filters)?;
        if let Some(search) = &request.search {
            check_text("search", search, MAX_ID_LEN)?;
        }
        if let Some(group) = &request.group {
            rbac::validate_group_name(group)
                .map_err(|problem| ServiceError::invalid("group", problem))?;
        }
        let query = DeviceQuery {
            groups: Self::visible_groups(caller, request.group.as_deref()),
            // An id is looked up by its key; anything else is a substring of names.
            search: request.search.map(|text| {
                if is_device_id(&text) {
                    SearchText::Id(text)
                } else {
                    SearchText::NameContains(text)
                }
            }),
            ownership: request.ownership,
            latest_action_state: request.latest_action_state,
            start: start.clone(),
            // One more than the page tells whether another page follows.
            limit: size + 1,
        };
        let mut devices = self.store.search_devices(&query).await?;
        let size = size as usize;
        let more = devices.len() > size;
        let (next, previous) = match start {
            PageStart::First | PageStart::After(_) => {
                devices.truncate(size);
                let previous = matches!(start, PageStart::After(_))
                    .then(|| {
                        devices
                            .first()
                            .map(|d| search_token(&filters, false, &d.device))
                    })
                    .flatten();
                let next = more
                    .then(|| {
                        devices
                            .last()
                            .map(|d| search_token(&filters, true, &d.device))
                    })
                    .flatten();
                (next, previous)
            }
            PageStart::Before(_) => {
                if more {
                    devices.remove(0);
                }
                let previous = more
                    .then(|| {
                        devices
                            .first()
                            .map(|d| search_token(&filters, false, &d.device))
                    })
                    .flatten();
                let next = devices
                    .last()
                    .map(|d| search_token(&filters, true, &d.device));
                (next, previous)
            }
        };
        Ok(DevicePage {
            devices,
            next_page_token: next,
            previous_page_token: previous,
        })
    }

    pub(crate) fn is_online(&self, device_id: &str) -> bool {
        self.hot.is_online(device_id)
    }

    pub(crate) async fn assign_policy(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        scope: Scope,
        policy: Option<PasscodePolicy>,
    ) -> Result<Device, ServiceError> {
        check_id("device_id", device_id)?;
        if let Some(policy) = &policy {
            check_policy(policy)?;
        }
        let device = self.device_for(caller, device_id, &ASSIGN_POLICY).await?;
        if !device.has_store(scope) {
            return Err(ServiceError::invalid(
                "scope",
                format!("a {} device has no work profile", device.ownership),
            ));
        }
        self.store
            .set_policy(device_id, scope, policy.as_ref())
            .await?;
        // The commit sent the policy to the device's session.
        self.device_record(device_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_of_a_device_ids_shape_is_an_id() {
        assert!(is_device_id("dev_9afa06a4749d719c8f46a0249660514e"));
        assert!(
            !is_device_id("dev_9afa06a4749d719c8f46a0249660514"),
            "31 digits"
        );
        assert!(!is_device_id("dev_lab-phone"));
        assert!(!is_device_id("byod-42"));
    }

    #[test]
    fn search_tokens_carry_their_side_and_position_for_their_filters() {
        let device = Device {
            id: "dev_1".into(),
            display_name: "Ålice's phone".into(),
            ownership: Ownership::Byod,
            enrolled_at: 0,
            last_seen: 0,
            stores: Vec::new(),
            device_policy: None,
            work_profile_policy: None,
            policy_version: 0,
            escrowed_token_scopes: Vec::new(),
            group: "default".into(),
            api_level: 34,
            maker_profile: "pixel".into(),
        };
        let cursor = DeviceCursor {
            display_name: device.display_name.clone(),
            id: device.id.clone(),
        };
        let filters = ["phone", "byod", "", ""];
        let page = |token: String| PageRequest {
            page_size: 0,
            page_token: token,
        };
        assert_eq!(
            search_start(&page(search_token(&filters, true, &device)), &filters).unwrap(),
            PageStart::After(cursor.clone())
        );
        assert_eq!(
            search_start(&page(search_token(&filters, false, &device)), &filters).unwrap(),
            PageStart::Before(cursor)
        );
        assert_eq!(
            search_start(&page(String::new()), &filters).unwrap(),
            PageStart::First
        );
        let other = ["tablet", "byod", "", ""];
        assert!(search_start(&page(search_token(&filters, true, &device)), &other).is_err());
        for bad in ["", "%%", "eHl6", "YWJj"] {
            let token = page_token(List::DeviceSearch, &filters, &[bad, "x"]);
            assert!(search_start(&page(token), &filters).is_err(), "{bad}");
        }
    }
}
