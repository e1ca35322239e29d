//! Verification: signature with a trusted key, then product, binding and validity window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use sha2::{Digest, Sha256};
use tessera_fingerprint::{DeviceIdentity, HardwareId, KooGalleryFingerprint, MatchPolicy};
use tessera_types::Clock;
use time::OffsetDateTime;

use crate::error::{Location, SignatureError, VerifyError};
use crate::keys::{Algorithm, KeyId, PublicKey};
use crate::model::{Binding, FingerprintHash, License};
use crate::{file, payload, string_form};

/// The two forms a License travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LicenseForm {
    /// The text file (KooGallery `FILE` upload).
    File,
    /// The compact string (KooGallery `CHARACTERS` upload).
    String,
}

/// The parts of a device's identity a License binds to.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRef<'a> {
    /// The device's KooGallery fingerprint.
    pub fingerprint: &'a KooGalleryFingerprint,
    /// The device's hardware id, when known.
    pub hardware_id: Option<&'a HardwareId>,
}

impl<'a> From<&'a DeviceIdentity> for DeviceRef<'a> {
    fn from(identity: &'a DeviceIdentity) -> Self {
        Self {
            fingerprint: &identity.fingerprint,
            hardware_id: Some(&identity.hardware_id),
        }
    }
}

/// What a License is verified against: the product asking, the time, and the device.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The product the License must be for.
    pub product_id: &'a str,
    /// The current time, from the caller's trusted clock.
    pub now: OffsetDateTime,
    /// This device's identity.
    pub device: DeviceRef<'a>,
    /// How tolerant the binding check is (file form only; the string form matches its hash
    /// exactly).
    pub policy: MatchPolicy,
}

impl<'a> VerifyContext<'a> {
    /// A context at time `now` with the default match policy.
    #[must_use]
    pub fn new(product_id: &'a str, now: OffsetDateTime, device: impl Into<DeviceRef<'a>>) -> Self {
        Self {
            product_id,
            now,
            device: device.into(),
            policy: MatchPolicy::default(),
        }
    }

    /// A context at the time `clock` reads now, with the default match policy.
    #[must_use]
    pub fn at_clock(
        product_id: &'a str,
        clock: &dyn Clock,
        device: impl Into<DeviceRef<'a>>,
    ) -> Self {
        Self::new(product_id, clock.now(), device)
    }

    /// The same context with another match policy.
    #[must_use]
    pub fn with_policy(mut self, policy: MatchPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// A License whose signature verified with a trusted key; [`SignedLicense::check`] then says
/// whether it applies to a product, device and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLicense {
    /// The License's content.
    pub license: License,
    /// The key that signed it.
    pub key_id: KeyId,
    /// The form it arrived in.
    pub form: LicenseForm,
    /// SHA-256 of the input bytes as given, the key of [`VerificationCache`].
    pub input_sha256: [u8; 32],
}

impl SignedLicense {
    /// Checks, in this order, the product, the device binding, the start and the end of validity.
    ///
    /// # Errors
    /// [`VerifyError::WrongProduct`], [`VerifyError::BindingMismatch`],
    /// [`VerifyError::NotYetValid`] or [`VerifyError::Expired`].
    pub fn check(&self, ctx: &VerifyContext<'_>) -> Result<(), VerifyError> {
        let license = &self.license;
        if license.product_id != ctx.product_id {
            return Err(VerifyError::WrongProduct {
                expected: ctx.product_id.to_owned(),
                found: license.product_id.clone(),
            });
        }
        check_binding(&license.binding, ctx.device, ctx.policy)?;
        if ctx.now < license.not_before {
            return Err(VerifyError::NotYetValid {
                not_before: license.not_before,
            });
        }
        if let Some(not_after) = license.not_after
            && ctx.now >= not_after
        {
            return Err(VerifyError::Expired { not_after });
        }
        Ok(())
    }
}

fn check_binding(
    binding: &Binding,
    device: DeviceRef<'_>,
    policy: MatchPolicy,
) -> Result<(), VerifyError> {
    match binding {
        Binding::Device {
            fingerprint,
            hardware_id,
        } => {
            // The hardware id, when both sides have one, decides: its per-component hashes are
            // what the tolerant match was designed for. Otherwise the fingerprint string does.
            let verdict = match (hardware_id, device.hardware_id) {
                (Some(licensed), Some(here)) => licensed.matches(here, policy),
                _ => {
                    let licensed = KooGalleryFingerprint::parse(fingerprint).map_err(|_| {
                        VerifyError::BindingMismatch {
                            explanation: "the License's fingerprint is not a KooGallery \
                                          fingerprint, so no device can match it"
                                .to_owned(),
                        }
                    })?;
                    licensed.matches(device.fingerprint, policy)
                }
            };
            if verdict.matched {
                Ok(())
            } else {
                Err(VerifyError::BindingMismatch {
                    explanation: verdict.to_string(),
                })
            }
        }
        Binding::FingerprintHash(licensed) => {
            let here = FingerprintHash::of(device.fingerprint.as_str());
            if here == *licensed {
                Ok(())
            } else {
                Err(VerifyError::BindingMismatch {
                    explanation: format!(
                        "the License string is bound to the fingerprint with SHA-256 {licensed}, \
                         this device's fingerprint hashes to {here} (the string form carries only \
                         the hash, so it cannot tolerate any hardware change)"
                    ),
                })
            }
        }
    }
}

/// Holds the public keys trusted to sign Licenses, by key id, so keys can rotate: an ISV adds
/// its new key and keeps the old one until the Licenses it signed have expired.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl Verifier {
    /// A verifier trusting no key yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A verifier trusting `keys`.
    #[must_use]
    pub fn with_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut v = Self::new();
        for key in keys {
            v.add_key(key);
        }
        v
    }

    /// Trusts `key`; returns its id.
    pub fn add_key(&mut self, key: PublicKey) -> KeyId {
        let id = key.key_id().clone();
        self.keys.insert(id.clone(), key);
        id
    }

    /// Stops trusting the key with `id`.
    pub fn remove_key(&mut self, id: &KeyId) -> Option<PublicKey> {
        self.keys.remove(id)
    }

    /// The trusted keys, ordered by id.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// Checks the signature of a License in either form (told apart by their first bytes) and
    /// decodes it, without looking at product, device or time.
    ///
    /// # Errors
    /// [`VerifyError`] up to and including [`VerifyError::UnsupportedFormatVersion`].
    pub fn open(&self, input: &[u8]) -> Result<SignedLicense, VerifyError> {
        let start = input.trim_ascii_start();
        if start.starts_with(file::HEADER.as_bytes()) {
            self.open_file(input)
        } else if start.starts_with(string_form::PREFIX.as_bytes()) {
            self.open_string(input)
        } else {
            Err(VerifyError::malformed(
                Location::InputByte(input.len() - start.len()),
                format!(
                    "neither a License file ({:?}) nor a License string ({:?}.)",
                    file::HEADER,
                    string_form::PREFIX
                ),
            ))
        }
    }

    /// [`Verifier::open`] for the file form only.
    ///
    /// # Errors
    /// As [`Verifier::open`].
    pub fn open_file(&self, input: &[u8]) -> Result<SignedLicense, VerifyError> {
        let envelope = file::decode(input)?;
        let key = self.signing_key(&envelope.algorithm, &envelope.key_id)?;
        if !key.verifies(&envelope.signed_message(), &envelope.signature) {
            return Err(VerifyError::BadSignature {
                key_id: key.key_id().clone(),
            });
        }
        let license = payload::decode(&envelope.payload)?;
        Ok(self.signed(license, key, LicenseForm::File, input))
    }

    /// [`Verifier::open`] for the string form only.
    ///
    /// # Errors
    /// As [`Verifier::open`].
    pub fn open_string(&self, input: &[u8]) -> Result<SignedLicense, VerifyError> {
        let parts = string_form::decode(input)?;
        let key = self.signing_key(&parts.algorithm, &parts.key_id)?;
        if !key.verifies(
            &string_form::signed_message(&parts.payload),
            &parts.signature,
        ) {
            return Err(VerifyError::BadSignature {
                key_id: key.key_id().clone(),
            });
        }
        let license = string_form::decode_payload(&parts.payload)?;
        Ok(self.signed(license, key, LicenseForm::String, input))
    }

    fn signed(
        &self,
        license: License,
        key: &PublicKey,
        form: LicenseForm,
        input: &[u8],
    ) -> SignedLicense {
        tracing::debug!(key_id = %key.key_id(), ?form, product_id = %license.product_id, "License signature verified");
        SignedLicense {
            license,
            key_id: key.key_id().clone(),
            form,
            input_sha256: Sha256::digest(input).into(),
        }
    }

    fn signing_key(&self, algorithm: &str, key_id: &str) -> Result<&PublicKey, VerifyError> {
        let Some(algorithm) = Algorithm::parse(algorithm) else {
            return Err(VerifyError::UnsupportedAlgorithm(algorithm.to_owned()));
        };
        let Some(id) = KeyId::parse(key_id) else {
            return Err(VerifyError::malformed(
                Location::Field("key id".into()),
                format!("a key id is {} lower-case hex digits", KeyId::LEN),
            ));
        };
        match self.keys.get(&id) {
            Some(key) if key.algorithm() == algorithm => Ok(key),
            Some(_) => Err(VerifyError::UnsupportedAlgorithm(
                algorithm.as_str().to_owned(),
            )),
            None => Err(VerifyError::UnknownKeyId(id)),
        }
    }

    /// Opens the License and checks it against `ctx`: everything a License must pass.
    ///
    /// # Errors
    /// The first failing check, in the order of [`VerifyError`]'s variants.
    pub fn verify(
        &self,
        input: &[u8],
        ctx: &VerifyContext<'_>,
    ) -> Result<SignedLicense, VerifyError> {
        let signed = self.open(input)?;
        signed.check(ctx)?;
        Ok(signed)
    }

    /// [`Verifier::verify`], reusing the signature check of an earlier call on the same bytes
    /// when `cache` has it and its key is still trusted. Product, binding and time are checked
    /// every time.
    ///
    /// # Errors
    /// As [`Verifier::verify`].
    pub fn verify_cached(
        &self,
        cache: &mut VerificationCache,
        input: &[u8],
        ctx: &VerifyContext<'_>,
    ) -> Result<SignedLicense, VerifyError> {
        let digest: [u8; 32] = Sha256::digest(input).into();
        let signed = match cache.get(&digest) {
            Some(hit) if self.keys.contains_key(&hit.key_id) => hit.clone(),
            _ => {
                let signed = self.open(input)?;
                cache.insert(signed.clone());
                signed
            }
        };
        signed.check(ctx)?;
        Ok(signed)
    }

    /// Verifies a signature over arbitrary bytes with a trusted key, for other signed documents
    /// of the ISV such as identity overrides for containers. Returns the key's id.
    ///
    /// The caller must make sure `message` is specific to its purpose (a context prefix, as
    /// Licenses use), so that no signed document can pass for another kind.
    ///
    /// # Errors
    /// [`SignatureError`] saying which of algorithm, key id or signature failed.
    pub fn verify_detached(
        &self,
        key_id: &str,
        algorithm: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<KeyId, SignatureError> {
        let Some(algorithm) = Algorithm::parse(algorithm) else {
            return Err(SignatureError::UnsupportedAlgorithm(algorithm.to_owned()));
        };
        let key = KeyId::parse(key_id)
            .and_then(|id| self.keys.get(&id))
            .ok_or_else(|| SignatureError::UnknownKeyId(key_id.to_owned()))?;
        if key.algorithm() != algorithm {
            return Err(SignatureError::UnsupportedAlgorithm(
                algorithm.as_str().to_owned(),
            ));
        }
        if key.verifies(message, signature) {
            Ok(key.key_id().clone())
        } else {
            Err(SignatureError::BadSignature(key.key_id().clone()))
        }
    }
}

/// Signature checks already done, by SHA-256 of the License bytes, so the agent does not repeat
/// an RSA verification every time an application checks a License it has seen. Holds at most
/// `capacity` entries and forgets the oldest first.
#[derive(Debug, Clone)]
pub struct VerificationCache {
    capacity: usize,
    entries: HashMap<[u8; 32], SignedLicense>,
    order: VecDeque<[u8; 32]>,
}

impl VerificationCache {
    /// A cache of at most `capacity` Licenses (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            entries: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
        }
    }

    /// Number of Licenses held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (for instance after the trusted keys changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn get(&self, digest: &[u8; 32]) -> Option<&SignedLicense> {
        self.entries.get(digest)
    }

    fn insert(&mut self, signed: SignedLicense) {
        let digest = signed.input_sha256;
        if self.entries.insert(digest, signed).is_none() {
            self.order.push_back(digest);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

impl Default for VerificationCache {
    fn default() -> Self {
        Self::new(64)
    }
}
