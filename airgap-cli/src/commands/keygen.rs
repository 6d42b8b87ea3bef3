//! `airgap keygen`: an age key pair (who may decrypt) and a minisign key pair (who signed).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::commands::seal::seal;
use crate::ui::Ui;

const EXAMPLES: &str = "\
Examples:
  airgap keygen --out keys                   keys/airgap.age.key, .age.pub, .minisign.key, .minisign.pub
  airgap keygen --out ~/.airgap --name site-b

The secret files (*.key) are written mode 0600; keygen never overwrites a file.
  encrypt to it:   airgap bundle --encrypt-to $(cat keys/airgap.age.pub)
  decrypt:         airgap unpack B.tar.gz.age DEST -i keys/airgap.age.key
                   (or age -d -i keys/airgap.age.key -o B.tar.gz B.tar.gz.age)
  sign:            airgap bundle --sign keys/airgap.minisign.key
  check:           airgap verify B.tar.gz --trusted-key keys/airgap.minisign.pub
                   (or minisign -Vm B.tar.gz -p keys/airgap.minisign.pub)

stdout: the age public key, then the minisign public key (base64).";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct KeygenArgs {
    /// The directory to write the keys to (created if needed)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// The files' base name
    #[arg(long, default_value = "airgap")]
    pub name: String,
}

pub fn run(args: KeygenArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    if args.name.is_empty() || args.name.contains('/') || args.name.starts_with('.') {
        anyhow::bail!("invalid key name {:?}", args.name);
    }
    let keys = airgap_seal::generate(&args.out, &args.name).map_err(seal)?;
    ui.status(
        "Wrote",
        &format!(
            "{} (secret) and {}: age, to encrypt and decrypt",
            keys.age_identity.display(),
            keys.age_recipient_file.display()
        ),
    );
    ui.status(
        "Wrote",
        &format!(
            "{} (secret) and {}: minisign key {}, to sign and verify",
            keys.minisign_secret.display(),
            keys.minisign_public.display(),
            keys.minisign_key_id
        ),
    );
    println!("{}", keys.age_recipient);
    println!("{}", keys.minisign_public_line);
    Ok(ExitCode::SUCCESS)
}
