//! CPU identity and features as the boot log reports them. Pure data, host-tested;
//! `arch::x86_64::cpu` fills it in from CPUID.

use core::fmt;

bitflags::bitflags! {
    /// The CPU features Xenia uses or reports.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Features: u32 {
        const PCID = 1 << 0;
        const X2APIC = 1 << 1;
        const SMEP = 1 << 2;
        const SMAP = 1 << 3;
        const UMIP = 1 << 4;
        const FSGSBASE = 1 << 5;
        const NX = 1 << 6;
        const PAGE_1G = 1 << 7;
        const SVM = 1 << 8;
        const VMX = 1 << 9;
        const TSC_DEADLINE = 1 << 10;
        const INVARIANT_TSC = 1 << 11;
        const APIC = 1 << 12;
        const TSC = 1 << 13;
    }
}

/// The order and names of the features in the boot log's `cpu:` line. Tests and tools
/// parse this line: append, never reorder.
pub const REPORTED: [(Features, &str); 12] = [
    (Features::PCID, "pcid"),
    (Features::X2APIC, "x2apic"),
    (Features::SMEP, "smep"),
    (Features::SMAP, "smap"),
    (Features::UMIP, "umip"),
    (Features::FSGSBASE, "fsgsbase"),
    (Features::NX, "nx"),
    (Features::PAGE_1G, "1g"),
    (Features::SVM, "svm"),
    (Features::VMX, "vmx"),
    (Features::TSC_DEADLINE, "tsc-deadline"),
    (Features::INVARIANT_TSC, "invariant-tsc"),
];

#[derive(Clone, Copy, Debug)]
pub struct CpuInfo {
    /// CPUID leaf 0 vendor string, e.g. `GenuineIntel`.
    pub vendor: [u8; 12],
    /// CPUID 8000_0002h–8000_0004h brand string, NUL padded.
    pub brand: [u8; 48],
    pub features: Features,
    /// The TSC (and crystal) frequency CPUID leaves 15h/16h name, if they name one
    /// (`crate::calibrate::cpuid_clock`).
    pub clock: Option<crate::calibrate::CpuidClock>,
}

/// Printable text of a CPUID string: stops at NUL, trims spaces, replaces anything
/// that is not printable ASCII (CPUID strings are firmware-controlled).
fn cpuid_text(bytes: &[u8]) -> impl fmt::Display + '_ {
    struct Text<'a>(&'a [u8]);
    impl fmt::Display for Text<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
            let s = &self.0[..end];
            let first = s.iter().position(|b| *b != b' ').unwrap_or(s.len());
            let last = s.iter().rposition(|b| *b != b' ').map_or(first, |i| i + 1);
            for &b in &s[first..last] {
                let c = if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                };
                fmt::Write::write_char(f, c)?;
            }
            Ok(())
        }
    }
    Text(bytes)
}

impl fmt::Display for CpuInfo {
    /// `<vendor> <brand>, features: +name -name ...` (the `cpu:` prefix is the caller's).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}, features:",
            cpuid_text(&self.vendor),
            cpuid_text(&self.brand)
        )?;
        for (flag, name) in REPORTED {
            let sign = if self.features.contains(flag) {
                '+'
            } else {
                '-'
            };
            write!(f, " {sign}{name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(features: Features) -> CpuInfo {
        let mut brand = [0u8; 48];
        brand[..21].copy_from_slice(b"  QEMU TCG CPU 2.5+  ");
        CpuInfo {
            vendor: *b"GenuineIntel",
            brand,
            features,
            clock: None,
        }
    }

    #[test]
    fn line_lists_every_feature_in_order() {
        let s = alloc::format!(
            "{}",
            info(Features::SMEP | Features::NX | Features::PAGE_1G)
        );
        assert_eq!(
            s,
            "GenuineIntel QEMU TCG CPU 2.5+, features: -pcid -x2apic +smep -smap -umip \
             -fsgsbase +nx +1g -svm -vmx -tsc-deadline -invariant-tsc"
        );
    }

    #[test]
    fn hostile_cpuid_strings_stay_printable() {
        let mut c = info(Features::empty());
        c.vendor = *b"\x01\x02abc\xffdefghi";
        c.brand = [0xff; 48];
        let s = alloc::format!("{c}");
        assert!(s.starts_with("??abc?defghi "), "{s}");
        assert!(s.is_ascii());
    }
}
