//! NATS subject names. Tenants, event types and webhook ids are single subject tokens
//! (validated in hookd-core), so they can be placed here without escaping.

use hookd_core::WebhookId;

pub const EVENTS_PREFIX: &str = "hookd.events";
pub const DELIVERIES_PREFIX: &str = "hookd.deliveries";
/// Scheduled retries wait here, one subject per delivery, until JetStream publishes them to
/// their delivery subject.
pub const RETRIES_PREFIX: &str = "hookd.retries";

/// Events kept for deactivated webhooks, one subject per webhook.
pub const BUFFER_PREFIX: &str = "hookd.buffer";

/// `hookd.buffer.<tenant>.<webhook-id>`
pub fn buffer(tenant: &str, webhook: &WebhookId) -> String {
    format!("{BUFFER_PREFIX}.{tenant}.{webhook}")
}

/// The tenant and webhook of a buffer subject, if `subject` is one.
pub fn parts_of_buffer(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(BUFFER_PREFIX)?.strip_prefix('.')?;
    let (tenant, webhook) = rest.split_once('.')?;
    (!tenant.is_empty() && !webhook.is_empty() && !webhook.contains('.'))
        .then_some((tenant, webhook))
}

/// `hookd.events.<tenant>.<event-type>`
pub fn event(tenant: &str, event_type: &str) -> String {
    format!("{EVENTS_PREFIX}.{tenant}.{event_type}")
}

/// `hookd.deliveries.<tenant>.<webhook-id>`
pub fn delivery(tenant: &str, webhook: &WebhookId) -> String {
    format!("{DELIVERIES_PREFIX}.{tenant}.{webhook}")
}

/// `hookd.retries.<tenant>.<delivery-id>`
pub fn retry(tenant: &str, delivery: &hookd_core::DeliveryId) -> String {
    format!("{RETRIES_PREFIX}.{tenant}.{delivery}")
}

/// The tenant token of an event subject, if `subject` is one.
pub fn tenant_of_event(subject: &str) -> Option<&str> {
    parts_of_event(subject).map(|(tenant, _)| tenant)
}

/// The tenant and event type of an event subject, if `subject` is one.
pub fn parts_of_event(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(EVENTS_PREFIX)?.strip_prefix('.')?;
    let (tenant, event_type) = rest.split_once('.')?;
    (!tenant.is_empty() && !event_type.is_empty()).then_some((tenant, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_and_read_back() {
        let s = event("default", "contact-created");
        assert_eq!(s, "hookd.events.default.contact-created");
        assert_eq!(tenant_of_event(&s), Some("default"));
        assert_eq!(tenant_of_event("hookd.events.default"), None);
        assert_eq!(tenant_of_event("other.events.a.b"), None);
        assert_eq!(parts_of_event(&s), Some(("default", "contact-created")));
        assert_eq!(delivery("default", &WebhookId::from("wh_1")), "hookd.deliveries.default.wh_1");
        let b = buffer("default", &WebhookId::from("wh_1"));
        assert_eq!(b, "hookd.buffer.default.wh_1");
        assert_eq!(parts_of_buffer(&b), Some(("default", "wh_1")));
        assert_eq!(parts_of_buffer("hookd.buffer.default"), None);
    }
}
