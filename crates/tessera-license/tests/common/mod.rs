//! Fixtures shared by the integration tests: the committed test-only keys, a sample License and
//! device identities built from fingerprint strings.
#![allow(dead_code)] // each test binary uses a different subset

use tessera_fingerprint::{ComponentKind, HardwareId, HardwareIdSalt, KooGalleryFingerprint};
use tessera_license::{
    Binding, DeviceRef, FORMAT_VERSION, Feature, License, Nonce, PublicKey, SigningKey, Verifier,
};
use time::OffsetDateTime;

pub const KEY_A_PRIVATE: &str = include_str!("../keys/test-isv-a.pkcs8.pem");
pub const KEY_A_PUBLIC: &str = include_str!("../keys/test-isv-a.spki.pem");
pub const KEY_A_ID: &str = "f05d7a13b971fd09";
pub const KEY_B_PRIVATE: &str = include_str!("../keys/test-isv-b.pkcs8.pem");
pub const KEY_B_PUBLIC: &str = include_str!("../keys/test-isv-b.spki.pem");
pub const KEY_B_ID: &str = "b29ba576f5a12fed";

pub const PRODUCT: &str = "OFFER-cae-solver-pro";
pub const FINGERPRINT: &str = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.|BOARD-7781|BFEBFBFF00090672";
/// 2026-01-01T00:00:00Z
pub const NOT_BEFORE: i64 = 1_767_225_600;
/// 2027-01-01T00:00:00Z
pub const NOT_AFTER: i64 = 1_798_761_600;

pub fn signer_a() -> SigningKey {
    SigningKey::from_pkcs8_pem(KEY_A_PRIVATE).expect("test key A")
}

pub fn signer_b() -> SigningKey {
    SigningKey::from_pkcs8_pem(KEY_B_PRIVATE).expect("test key B")
}

pub fn verifier_a() -> Verifier {
    Verifier::with_keys([PublicKey::from_spki_pem(KEY_A_PUBLIC).expect("test key A public")])
}

pub fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).expect("time in range")
}

pub fn license() -> License {
    License {
        format_version: FORMAT_VERSION,
        license_id: "lic-6f1c2e9a-3b7d-4c55-9a1e-0d2f8b7c6a51".into(),
        product_id: PRODUCT.into(),
        instance_id: "inst-20260101-000042".into(),
        order_id: "CS2601010000421".into(),
        features: vec![
            Feature {
                name: "solver".into(),
                count: 4,
                max_version: Some("2026.2".into()),
            },
            Feature {
                name: "mesher".into(),
                count: 1,
                max_version: None,
            },
        ],
        binding: Binding::fingerprint(FINGERPRINT),
        issued_at: at(NOT_BEFORE - 3600),
        not_before: at(NOT_BEFORE),
        not_after: Some(at(NOT_AFTER)),
        trial: false,
        nonce: Nonce([0x5a; 16]),
    }
}

pub fn salt() -> HardwareIdSalt {
    HardwareIdSalt::new(b"tessera-license tests".to_vec())
}

pub fn hardware_id(machine_id: &str, board: &str, cpu: &str, disk: &str) -> HardwareId {
    HardwareId::from_values(
        [
            (ComponentKind::MachineId, machine_id),
            (ComponentKind::BoardSerial, board),
            (ComponentKind::CpuId, cpu),
            (ComponentKind::Disk, disk),
        ],
        &salt(),
    )
}

/// A device: its KooGallery fingerprint and hardware id.
pub struct Device {
    pub fingerprint: KooGalleryFingerprint,
    pub hardware_id: HardwareId,
}

impl Device {
    pub fn r(&self) -> DeviceRef<'_> {
        DeviceRef {
            fingerprint: &self.fingerprint,
            hardware_id: Some(&self.hardware_id),
        }
    }
}

/// A device whose KooGallery fingerprint is `fingerprint` and whose hardware id is `hw`.
pub fn device_with(fingerprint: &str, hw: HardwareId) -> Device {
    Device {
        fingerprint: KooGalleryFingerprint::parse(fingerprint).expect("fixture fingerprint"),
        hardware_id: hw,
    }
}

pub fn device(fingerprint: &str) -> Device {
    device_with(
        fingerprint,
        hardware_id("machine-1", "board-1", "cpu-1", "disk-1"),
    )
}
