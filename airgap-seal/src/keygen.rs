//! `airgap keygen`: an age identity (the `age-keygen` file format) and a minisign key pair
//! (unencrypted, as `minisign -G -W` writes them), secret files mode 0600, never overwriting.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

use crate::error::SealError;
use crate::sign::write_atomic;

/// What `keygen` wrote.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// The age identity (secret): give it to `--identity` / `age -d -i`.
    pub age_identity: PathBuf,
    /// The age public key file (one `age1...` line): give its content to `--encrypt-to`.
    pub age_recipient_file: PathBuf,
    /// The age public key itself.
    pub age_recipient: String,
    /// The minisign secret key: give it to `--sign`.
    pub minisign_secret: PathBuf,
    /// The minisign public key: give it to `--trusted-key` / `minisign -p`.
    pub minisign_public: PathBuf,
    /// The minisign public key's base64 line.
    pub minisign_public_line: String,
    /// Its key id.
    pub minisign_key_id: String,
}

/// The four file names `keygen` writes in `dir` for `name`.
pub fn key_paths(dir: &Path, name: &str) -> [PathBuf; 4] {
    [
        dir.join(format!("{name}.age.key")),
        dir.join(format!("{name}.age.pub")),
        dir.join(format!("{name}.minisign.key")),
        dir.join(format!("{name}.minisign.pub")),
    ]
}

/// Make both key pairs in `dir` (created if needed). Refuses if any file already exists.
pub fn generate(dir: &Path, name: &str) -> Result<KeyFiles, SealError> {
    let paths = key_paths(dir, name);
    for p in &paths {
        if p.exists() || p.symlink_metadata().is_ok() {
            return Err(SealError::Exists { path: p.clone() });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| SealError::io("creating", dir, e))?;
    let [age_key, age_pub, mini_key, mini_pub] = paths;

    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = humantime_now();
    let secret = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    write_atomic(&age_key, secret.as_bytes(), 0o600)?;
    write_atomic(&age_pub, format!("{recipient}\n").as_bytes(), 0o644)?;

    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| SealError::Sign {
        bundle: mini_key.clone(),
        reason: e.to_string(),
    })?;
    let id = {
        let mut n = [0u8; 8];
        let k = pair.pk.keynum();
        n[..k.len().min(8)].copy_from_slice(&k[..k.len().min(8)]);
        format!("{:016X}", u64::from_le_bytes(n))
    };
    let boxed = |r: minisign::Result<String>| {
        r.map_err(|e| SealError::Sign {
            bundle: mini_key.clone(),
            reason: e.to_string(),
        })
    };
    let sk_text = boxed(
        pair.sk
            .to_box(Some(
                "minisign secret key, unencrypted, written by airgap keygen",
            ))
            .map(|b| b.into_string()),
    )?;
    let pk_text = boxed(pair.pk.to_box().map(|b| b.into_string()))?;
    write_atomic(&mini_key, sk_text.as_bytes(), 0o600)?;
    write_atomic(&mini_pub, pk_text.as_bytes(), 0o644)?;
    Ok(KeyFiles {
        age_identity: age_key,
        age_recipient_file: age_pub,
        age_recipient: recipient,
        minisign_secret: mini_key,
        minisign_public: mini_pub,
        minisign_public_line: pair.pk.to_base64(),
        minisign_key_id: id,
    })
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (what age-keygen writes), without a date crate.
fn humantime_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
