//! Paging of every admin list, as AIP-158 shapes it: a page size with a default and a maximum
//! per list (0 means the default, more than the maximum is clamped, a negative one refused), and
//! page tokens opaque to clients. A token is base64url of the list's tag, a fingerprint of the
//! request's filters and the keyset position after which the next page starts, so a page costs
//! its own rows, inserts and deletes elsewhere never shift it, and a token of another list or of
//! other filters is refused instead of silently starting somewhere else.

use super::ServiceError;
use crate::crypto::sha256;
use crate::store::{ActionKey, AuditKey, DeviceKey, Page, PageQuery, RowKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Separates a position's parts: none of them (ids, display names, numbers) holds a control
/// character.
const PART_SEPARATOR: char = '\0';
/// Bytes of SHA-256 over the filters a token carries: enough to tell filters apart; the filters
/// are the caller's own request, so they are no secret to hide.
const FINGERPRINT_LEN: usize = 8;
/// The longest token accepted, checked before decoding anything.
const MAX_TOKEN_LEN: usize = 1024;

/// The lists that page, each with its tag in its tokens and its page sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    Devices,
    DeviceSearch,
    Actions,
    AuditEvents,
    Roles,
    Principals,
}

const LISTS: [List; 6] = [
    List::Devices,
    List::DeviceSearch,
    List::Actions,
    List::AuditEvents,
    List::Roles,
    List::Principals,
];

impl List {
    fn tag(self) -> u8 {
        match self {
            List::Devices => b'd',
            List::DeviceSearch => b's',
            List::Actions => b'a',
            List::AuditEvents => b'e',
            List::Roles => b'r',
            List::Principals => b'p',
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            List::Devices => "ListDevices",
            List::DeviceSearch => "SearchDevices",
            List::Actions => "ListActions",
            List::AuditEvents => "ListAuditEvents",
            List::Roles => "ListRoles",
            List::Principals => "ListPrincipals",
        }
    }

    /// The page size of a request that leaves it 0, and the largest one served; both are stated
    /// in `admin.proto` and the README. A page of the largest size stays far below gRPC's 4 MiB
    /// message limit.
    fn sizes(self) -> (u32, u32) {
        match self {
            List::Devices | List::Actions | List::AuditEvents => (1000, 10_000),
            List::DeviceSearch => (50, 1000),
            List::Roles | List::Principals => (100, 1000),
        }
    }
}

/// A list request's paging fields, as received.
#[derive(Clone, Debug, Default)]
pub(crate) struct PageRequest {
    pub(crate) page_size: i32,
    /// Empty for the first page.
    pub(crate) page_token: String,
}

/// One page of a list and the token of the page after it.
#[derive(Debug)]
pub(crate) struct Listing<T> {
    pub(crate) items: Vec<T>,
    /// `None` on the last page.
    pub(crate) next_page_token: Option<String>,
}

impl PageRequest {
    /// The number of items to read: 0 means the list's default, more than its maximum is
    /// clamped to it, a negative number is refused.
    pub(crate) fn size(&self, list: List) -> Result<u32, ServiceError> {
        let (default, max) = list.sizes();
        match u32::try_from(self.page_size) {
            Err(_) => Err(ServiceError::invalid(
                "page_size",
                format!("must not be negative; 0 means the default of {default}"),
            )),
            Ok(0) => Ok(default),
            Ok(size) => Ok(size.min(max)),
        }
    }

    /// The position parts the request's token carries, checked against `list` and `filters`;
    /// `None` for the first page.
    pub(crate) fn position(
        &self,
        list: List,
        filters: &[&str],
    ) -> Result<Option<Vec<String>>, ServiceError> {
        if self.page_token.is_empty() {
            return Ok(None);
        }
        // The token is never echoed: it may be anything the caller sent.
        let malformed = || {
            ServiceError::invalid(
                "page_token",
                format!(
                    "is not a page token of {}: send an earlier answer's next_page_token \
                     unchanged, or none for the first page",
                    list.rpc()
                ),
            )
        };
        if self.page_token.len() > MAX_TOKEN_LEN {
            return Err(malformed());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.page_token)
            .map_err(|_| malformed())?;
        let Some((&tag, rest)) = bytes.split_first() else {
            return Err(malformed());
        };
        if tag != list.tag() {
            return Err(match LISTS.iter().find(|other| other.tag() == tag) {
                Some(other) => ServiceError::invalid(
                    "page_token",
                    format!("is a page token of {}, not of {}", other.rpc(), list.rpc()),
                ),
                None => malformed(),
            });
        }
        let (fingerprint, position) = rest
            .split_at_checked(FINGERPRINT_LEN)
            .ok_or_else(malformed)?;
        if fingerprint != filter_fingerprint(list, filters) {
            return Err(ServiceError::invalid(
                "page_token",
                "was made for other filters: repeat the filters of the request it answered, or \
                 start again without a page token",
            ));
        }
        let position = std::str::from_utf8(position).map_err(|_| malformed())?;
        Ok(Some(
            position.split(PART_SEPARATOR).map(str::to_string).collect(),
        ))
    }

    /// The store's page query: its size and, from the token, the key it starts after.
    pub(crate) fn query<K: Position>(
        &self,
        list: List,
        filters: &[&str],
    ) -> Result<PageQuery<K>, ServiceError> {
        let limit = self.size(list)?;
        let after = match self.position(list, filters)? {
            None => None,
            Some(parts) => Some(K::from_parts(&parts).ok_or_else(|| {
                ServiceError::invalid(
                    "page_token",
                    format!("does not hold a position in {}", list.rpc()),
                )
            })?),
        };
        Ok(PageQuery { after, limit })
    }
}

/// The token of the page that starts after `position`, for `list` with these `filters`.
pub(crate) fn page_token(list: List, filters: &[&str], position: &[&str]) -> String {
    let mut bytes = vec![list.tag()];
    bytes.extend_from_slice(&filter_fingerprint(list, filters));
    for (i, part) in position.iter().enumerate() {
        if i > 0 {
            bytes.push(PART_SEPARATOR as u8);
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token of the page after the key the store returned, if another page follows.
fn next_page_token<K: Position>(list: List, filters: &[&str], next: Option<&K>) -> Option<String> {
    next.map(|key| {
        let parts = key.parts();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        page_token(list, filters, &parts)
    })
}

/// The store's page as the answer carries it: its items and the next page's token.
pub(crate) fn listing<T, K: Position>(
    list: List,
    filters: &[&str],
    page: Page<T, K>,
) -> Listing<T> {
    Listing {
        next_page_token: next_page_token(list, filters, page.next.as_ref()),
        items: page.items,
    }
}

/// SHA-256 over the list's tag and each filter with its length, so no two filter lists share
/// their bytes.
fn filter_fingerprint(list: List, filters: &[&str]) -> [u8; FINGERPRINT_LEN] {
    let mut bytes = vec![list.tag()];
    for filter in filters {
        bytes.extend_from_slice(&(filter.len() as u64).to_be_bytes());
        bytes.extend_from_slice(filter.as_bytes());
    }
    let digest = sha256(&bytes);
    let mut fingerprint = [0; FINGERPRINT_LEN];
    fingerprint.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    fingerprint
}

/// A store key as the parts of a token's position.
pub(crate) trait Position: Sized {
    fn parts(&self) -> Vec<String>;
    fn from_parts(parts: &[String]) -> Option<Self>;
}

impl Position for DeviceKey {
    fn parts(&self) -> Vec<String> {
        vec![self.enrolled_at.to_string(), self.id.clone()]
    }

    fn from_parts(parts: &[String]) -> Option<DeviceKey> {
        let [enrolled_at, id] = parts else {
            return None;
        };
        super::validation::check_id("page_token", id).ok()?;
        Some(DeviceKey {
            enrolled_at: enrolled_at.parse().ok()?,
            id: id.clone(),
        })
    }
}

impl Position for ActionKey {
    fn parts(&self) -> Vec<String> {
        vec![self.created_at.to_string(), self.row.to_string()]
    }

    fn from_parts(parts: &[String]) -> Option<ActionKey> {
        let [created_at, row] = parts else {
            return None;
        };
        Some(ActionKey {
            created_at: created_at.parse().ok()?,
            row: row.parse().ok()?,
        })
    }
}

impl Position for AuditKey {
    fn parts(&self) -> Vec<String> {
        vec![self.at.to_string(), self.id.to_string()]
    }

    fn from_parts(parts: &[String]) -> Option<AuditKey> {
        let [at, id] = parts else {
            return None;
        };
        Some(AuditKey {
            at: at.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

impl Position for RowKey {
    fn parts(&self) -> Vec<String> {
        vec![self.to_string()]
    }

    fn from_parts(parts: &[String]) -> Option<RowKey> {
        let [row] = parts else {
            return None;
        };
        row.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(page_size: i32, page_token: &str) -> PageRequest {
        PageRequest {
            page_size,
            page_token: page_token.to_string(),
        }
    }

    fn field_and_problem(error: ServiceError) -> (&'static str, String) {
        match error {
            ServiceError::InvalidArgument { field, problem } => (field, problem),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn sizes_default_clamp_and_refuse_negatives() {
        assert_eq!(request(0, "").size(List::Devices).unwrap(), 1000);
        assert_eq!(request(7, "").size(List::Devices).unwrap(), 7);
        assert_eq!(request(1_000_000, "").size(List::Devices).unwrap(), 10_000);
        assert_eq!(request(0, "").size(List::DeviceSearch).unwrap(), 50);
        assert_eq!(request(5000, "").size(List::Roles).unwrap(), 1000);
        let (field, problem) = field_and_problem(request(-1, "").size(List::Roles).unwrap_err());
        assert_eq!(field, "page_size");
        assert!(problem.contains("negative"), "{problem}");
    }

    #[test]
    fn a_token_carries_its_position_back() {
        let key = DeviceKey {
            enrolled_at: 1_700_000_000_123,
            id: "dev_0123".into(),
        };
        let token = next_page_token(List::Devices, &["north"], Some(&key)).unwrap();
        let query: PageQuery<DeviceKey> =
            request(0, &token).query(List::Devices, &["north"]).unwrap();
        assert_eq!(query.after, Some(key));
        assert_eq!(query.limit, 1000);
        assert_eq!(next_page_token::<DeviceKey>(List::Devices, &[], None), None);
        let audit = AuditKey { at: 5, id: 9 };
        let token = next_page_token(List::AuditEvents, &["", "alice"], Some(&audit)).unwrap();
        let query: PageQuery<AuditKey> = request(3, &token)
            .query(List::AuditEvents, &["", "alice"])
            .unwrap();
        assert_eq!(query.after, Some(audit));
    }

    #[test]
    fn a_token_of_other_filters_or_another_list_is_refused() {
        let key = ActionKey {
            created_at: 1,
            row: 2,
        };
        let token = next_page_token(List::Actions, &["dev_1"], Some(&key)).unwrap();
        let (field, problem) = field_and_problem(
            request(0, &token)
                .query::<ActionKey>(List::Actions, &["dev_2"])
                .unwrap_err(),
        );
        assert_eq!(field, "page_token");
        assert!(problem.contains("other filters"), "{problem}");
        // The filters' bytes cannot run into each other: ("ab", "") is not ("a", "b").
        let token = page_token(List::AuditEvents, &["ab", ""], &["1", "2"]);
        assert!(
            request(0, &token)
                .query::<AuditKey>(List::AuditEvents, &["a", "b"])
                .is_err()
        );
        let (field, problem) = field_and_problem(
            request(0, &token)
                .query::<RowKey>(List::Roles, &[])
                .unwrap_err(),
        );
        assert_eq!(field, "page_token");
        assert!(
            problem.contains("ListAuditEvents, not of ListRoles"),
            "{problem}"
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_being_echoed() {
        let secret = "dfa_0123456789abcdef";
        for bad in [
            secret.to_string(),
            "%%%".into(),
            "A".repeat(2000),
            URL_SAFE_NO_PAD.encode(b"r"),
            page_token(List::Roles, &[], &["not a number"]),
            page_token(List::Roles, &[], &["1", "2"]),
        ] {
            let error = match request(0, &bad).query::<RowKey>(List::Roles, &[]) {
                Ok(query) => panic!("{bad:?} was taken as {query:?}"),
                Err(error) => error,
            };
            let (field, problem) = field_and_problem(error);
            assert_eq!(field, "page_token");
            assert!(!problem.contains(secret), "{problem}");
        }
        let spaced_id = page_token(List::Devices, &[""], &["1", "dev 1"]);
        assert!(
            request(0, &spaced_id)
                .query::<DeviceKey>(List::Devices, &[""])
                .is_err()
        );
    }
}
