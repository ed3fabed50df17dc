//! Which provider, from which number: the message's own provider first, then each
//! fallback in its configured order, each with an *equivalent number*:
//!
//! 1. the same number, when it is also listed under the fallback provider (a number
//!    reachable through two providers: ported or hosted messaging), else
//! 2. a pool number of the fallback provider in the same country (libphonenumber's
//!    region; the calling code when the region is unknown) that is enabled, not public
//!    and not leased, so the recipient's reply lands in an admin-only inbox rather than
//!    with another user or in public.
//!
//! A fallback without such a number, or without API credentials, is skipped.

use crate::domain::{PhoneNumber, same_country};
use crate::store::{NumberView, OutboundView, StoreError};

use super::Outbox;

/// One way to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub provider: String,
    pub number_id: u64,
    pub from: PhoneNumber,
}

impl Outbox {
    /// The ways to send `message`, in order of preference (health is not considered here).
    pub(super) fn candidates(&self, message: &OutboundView) -> Result<Vec<Candidate>, StoreError> {
        let Ok(from) = PhoneNumber::parse(&message.from) else {
            return Ok(Vec::new());
        };
        let providers = &self.inner.providers;
        let Some(own) = providers.get(&message.provider) else {
            return Ok(Vec::new());
        };
        let mut candidates = Vec::new();
        if own.client.is_some() {
            candidates.push(Candidate {
                provider: message.provider.clone(),
                number_id: message.number_id,
                from: from.clone(),
            });
        }
        let mut pool: Option<Vec<NumberView>> = None;
        for name in &own.config.fallback {
            let Some(fallback) = providers.get(name).filter(|p| p.client.is_some()) else {
                continue;
            };
            if fallback.serves(&from) {
                candidates.push(Candidate {
                    provider: name.clone(),
                    number_id: message.number_id,
                    from: from.clone(),
                });
                continue;
            }
            if pool.is_none() {
                pool = Some(self.inner.store.list_numbers()?);
            }
            let equivalent = pool.iter().flatten().find_map(|number| {
                let usable = number.provider == *name
                    && !number.disabled
                    && !number.public
                    && number.lease_id.is_none();
                let parsed = PhoneNumber::parse(&number.number).ok()?;
                (usable && same_country(&from, &parsed)).then_some((number.id, parsed))
            });
            if let Some((number_id, number)) = equivalent {
                candidates.push(Candidate {
                    provider: name.clone(),
                    number_id,
                    from: number,
                });
            }
        }
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{NumberConfig, ProviderConfig, SendingConfig};
    use crate::domain::{OutboundText, Secret};
    use crate::providers::health::BreakerSettings;
    use crate::providers::registry::{ProviderInstance, ProviderRegistry, ProviderSource};
    use crate::providers::send::{ApiConfig, ApiCredentials};
    use crate::providers::{ProviderKind, ProviderOptions};
    use crate::store::{NewOutbound, NumberPatch, SeedNumber};

    fn provider(name: &str, numbers: &[&str], sends: bool, fallback: &[&str]) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: ProviderKind::Telnyx,
            secret: Secret::default(),
            options: ProviderOptions {
                public_key: Some("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into()),
                ..ProviderOptions::default()
            },
            numbers: numbers
                .iter()
                .map(|n| NumberConfig {
                    number: PhoneNumber::parse(n).unwrap(),
                    retention: None,
                })
                .collect(),
            api: sends.then(|| ApiConfig {
                base_url: "http://127.0.0.1:9".into(),
                credentials: ApiCredentials::Telnyx {
                    api_key: Secret::new("k"),
                    messaging_profile_id: None,
                },
                status_callback: None,
            }),
            fallback: fallback.iter().map(|f| (*f).to_owned()).collect(),
            public_url: None,
            settings: crate::config::ProviderSettings::new(name, ProviderKind::Telnyx),
        }
    }

    const SENDING: SendingConfig = SendingConfig {
        timeout: Duration::from_secs(1),
        max_attempts: 3,
        backoff: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
        probe_interval: Duration::from_secs(60),
        breaker: BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
            trial_timeout: Duration::from_secs(1),
        },
    };

    #[tokio::test]
    async fn fallbacks_send_from_the_same_number_or_a_free_one_in_the_same_country() {
        let (store, _dir) = crate::store::testing::store();
        // "own" cannot send; "same" also serves its number; "country" has UK and US
        // numbers (one public, one free); "abroad" only a German one; "mute" no API.
        let providers = [
            provider(
                "own",
                &["+447700900001"],
                false,
                &["mute", "abroad", "country", "same"],
            ),
            provider("same", &["+447700900001"], true, &[]),
            provider(
                "country",
                &["+14155550100", "+447700900002", "+447700900003"],
                true,
                &[],
            ),
            provider("abroad", &["+4915123456789"], true, &[]),
            provider("mute", &["+447700900004"], false, &[]),
        ];
        let mut seeds = Vec::new();
        for config in &providers {
            for number in &config.numbers {
                if !seeds.iter().any(|s: &SeedNumber| s.number == number.number) {
                    seeds.push(SeedNumber::new(&config.name, number.number.as_str(), None));
                }
            }
        }
        let ids = store.ensure_numbers(seeds).await.unwrap();
        // +447700900002 is public: replies there would be readable by anyone.
        store
            .update_number(
                ids[2],
                NumberPatch {
                    public: Some(true),
                    ..NumberPatch::default()
                },
                Duration::ZERO,
            )
            .await
            .unwrap()
            .unwrap();
        let registry = ProviderRegistry::new(providers.iter().map(|config| {
            ProviderInstance::new(config.clone(), ProviderSource::Config, SENDING.timeout).unwrap()
        }));
        let (outbox, _queue) = Outbox::new(
            store.clone(),
            std::sync::Arc::new(registry),
            SENDING,
            Default::default(),
        );
        assert!(outbox.can_send_from("own"));
        assert!(!outbox.can_send_from("mute"));

        let id = store
            .create_outbound(NewOutbound {
                sender: 1,
                number_id: ids[0],
                provider: "own".into(),
                from: PhoneNumber::parse("+447700900001").unwrap(),
                to: PhoneNumber::parse("+447700900999").unwrap(),
                text: OutboundText::parse("hi").unwrap(),
                retention: Duration::from_secs(60),
            })
            .await
            .unwrap();
        let message = store.outbound(id).unwrap().unwrap();
        let chosen: Vec<(String, String)> = outbox
            .candidates(&message)
            .unwrap()
            .into_iter()
            .map(|c| (c.provider, c.from.as_str().to_owned()))
            .collect();
        assert_eq!(
            chosen,
            [
                ("country".to_owned(), "+447700900003".to_owned()),
                ("same".to_owned(), "+447700900001".to_owned()),
            ]
        );
    }
}
