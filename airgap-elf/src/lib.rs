//! airgap-elf
