//! What crosses the air gap, sealed: age encryption of the bundle as it streams to disk
//! ([`crypt::Encrypt`], an [`airgap_archive::OutputFilter`]) and back ([`crypt::Decrypt`], an
//! [`airgap_archive::Decryptor`]), detached minisign (Ed25519) signatures over the file as it
//! is on disk ([`sign`]), and key generation ([`keygen`]).
//!
//! The formats are the standard ones, so the other side can check them with `age` and
//! `minisign` alone. This crate never prints and never asks for a passphrase itself: the
//! caller passes secrets in as [`SecretString`]s, and no error message holds one.
//!
//! Architecture invariant: `airgap-archive` knows no crypto; it only offers the two hooks this
//! crate implements.

pub mod crypt;
pub mod error;
pub mod keygen;
pub mod sign;

pub use age::secrecy::SecretString;
pub use crypt::{is_encrypted, is_encrypted_opened, Decrypt, Encrypt, Keys, Recipients};
pub use error::SealError;
pub use keygen::{generate, KeyFiles};
pub use sign::{
    load_public_key, load_secret_key, sign_file, signature_path, verify_file, verify_opened,
    SigningKey, TrustedKey, Verified,
};
