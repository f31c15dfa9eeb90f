//! The nodes the toolstack writes for a domain when it is introduced, and removes when it
//! is destroyed, as libxl does (`libxl__domain_make` in `libxl_create.c`, `libxl__build_post`
//! in `libxl_dom.c`, the PV console's frontend of `libxl__device_console_add`):
//!
//! ```text
//! /local/domain/<id>                       dom0's, readable by the domain ("roperm")
//!     vm = "/vm/<uuid>"   name   domid
//!     cpu/  memory/  device/  control/     roperm
//!     memory/static-max, memory/target, memory/videoram (KiB)
//!     cpu/<n>/availability                 online | offline
//!     store/port, store/ring-ref
//!     control/shutdown, control/feature-poweroff, control/feature-reboot,
//!     control/feature-suspend, control/sysrq, device/suspend/event-channel,
//!     data, drivers, feature, attr, error  the domain's own ("rwperm")
//!     control/platform-feature-multiprocessor-suspend = "1"
//!     control/platform-feature-xs_reset_watches = "1"
//!     console/{port,ring-ref,limit,type,output}   the domain's, readable by dom0
//! /vm/<uuid>                               roperm
//!     uuid  name  image/ostype = "linux"  start_time
//! ```
//!
//! Everything is a handful of in-memory writes as dom0 (no transaction, nothing to wait
//! for), so creation stays flat. At destroy the home, `/vm/<uuid>` and every
//! `/local/domain/0/backend/<type>/<id>` go.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_abi::Errno;

use crate::store::{Access, DOM0, DomId, Perm, Store, home_path};

/// What the toolstack knows of a domain it hands to the store.
#[derive(Clone, Debug)]
pub struct NewDomain<'a> {
    /// Its id.
    pub dom: DomId,
    /// Its name.
    pub name: &'a str,
    /// Its handle.
    pub uuid: [u8; 16],
    /// vCPUs online at start.
    pub vcpus: u32,
    /// vCPUs it may have.
    pub max_vcpus: u32,
    /// `memory`, in KiB.
    pub target_kib: u64,
    /// `maxmem`, in KiB.
    pub static_max_kib: u64,
    /// Its store ring: machine frame and its end of the channel.
    pub store: (u64, u32),
    /// Its console ring, if it has one: machine frame and its end of the channel.
    pub console: Option<(u64, u32)>,
    /// System time it was made at, in seconds (`/vm/<uuid>/start_time`).
    pub start_time: u64,
}

/// A UUID as `8-4-4-4-12` lowercase hex (libxl's `LIBXL_UUID_FMT`).
pub fn uuid_text(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Store {
    /// Writes `d`'s nodes (see the module's documentation), replacing any left from an
    /// earlier domain of the same id.
    pub fn write_domain(&mut self, d: &NewDomain) -> Result<(), Errno> {
        let dom = d.dom;
        let home = home_path(dom);
        let vm = format!("/vm/{}", uuid_text(&d.uuid));
        let ro = [Perm::new(DOM0, Access::None), Perm::new(dom, Access::Read)];
        let rw = [Perm::new(dom, Access::None)];
        let fe = [Perm::new(dom, Access::None), Perm::new(DOM0, Access::Read)];
        let _ = self.rm(DOM0, &home);
        let _ = self.rm(DOM0, &vm);
        let node = |s: &mut Store, path: &str, perms: &[Perm]| -> Result<(), Errno> {
            s.mkdir(DOM0, path)?;
            s.set_perms(DOM0, path, perms)
        };
        node(self, &home, &ro)?;
        node(self, &vm, &ro)?;
        let at = |leaf: &str| format!("{home}/{leaf}");
        self.write(DOM0, &at("vm"), vm.as_bytes())?;
        self.write(DOM0, &at("name"), d.name.as_bytes())?;
        for dir in ["cpu", "memory", "device", "control"] {
            node(self, &at(dir), &ro)?;
        }
        for own in [
            "device/suspend/event-channel",
            "control/shutdown",
            "control/feature-poweroff",
            "control/feature-reboot",
            "control/feature-suspend",
            "control/sysrq",
            "data",
            "drivers",
            "feature",
            "attr",
            "error",
        ] {
            node(self, &at(own), &rw)?;
        }
        self.write(DOM0, &format!("{vm}/uuid"), uuid_text(&d.uuid).as_bytes())?;
        self.write(DOM0, &format!("{vm}/name"), d.name.as_bytes())?;
        self.write(DOM0, &format!("{vm}/image/ostype"), b"linux")?;
        self.write(
            DOM0,
            &format!("{vm}/start_time"),
            format!("{}.00", d.start_time).as_bytes(),
        )?;
        for feature in [
            "platform-feature-multiprocessor-suspend",
            "platform-feature-xs_reset_watches",
        ] {
            self.write(DOM0, &at(&format!("control/{feature}")), b"1")?;
        }
        let numbers: [(&str, String); 6] = [
            ("memory/static-max", format!("{}", d.static_max_kib)),
            ("memory/target", format!("{}", d.target_kib)),
            ("memory/videoram", String::from("0")),
            ("domid", format!("{dom}")),
            ("store/port", format!("{}", d.store.1)),
            ("store/ring-ref", format!("{}", d.store.0)),
        ];
        for (leaf, value) in &numbers {
            self.write(DOM0, &at(leaf), value.as_bytes())?;
        }
        for n in 0..d.max_vcpus {
            let v = if n < d.vcpus { "online" } else { "offline" };
            self.write(DOM0, &at(&format!("cpu/{n}/availability")), v.as_bytes())?;
        }
        if let Some((mfn, port)) = d.console {
            node(self, &at("console"), &fe)?;
            let keys: [(&str, String); 5] = [
                ("port", format!("{port}")),
                ("ring-ref", format!("{mfn}")),
                ("limit", String::from("1048576")),
                ("type", String::from("xenconsoled")),
                ("output", String::from("pty")),
            ];
            for (leaf, value) in &keys {
                self.write(DOM0, &at(&format!("console/{leaf}")), value.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Removes what the toolstack wrote for `dom`: its home, its `/vm/<uuid>` (named by
    /// its `vm` node) and its backends' directories `/local/domain/0/backend/<type>/<dom>`.
    pub fn remove_domain(&mut self, dom: DomId) {
        let home = home_path(dom);
        if let Ok(vm) = self.read(DOM0, &format!("{home}/vm"))
            && let Ok(vm) = String::from_utf8(vm)
            && vm.starts_with("/vm/")
        {
            let _ = self.rm(DOM0, &vm);
        }
        let _ = self.rm(DOM0, &home);
        let backends = "/local/domain/0/backend";
        let types: Vec<String> = self.directory(DOM0, backends).unwrap_or_default();
        for t in types {
            let _ = self.rm(DOM0, &format!("{backends}/{t}/{dom}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_libxl_and_removed_whole() {
        let mut s = Store::new(crate::Quota::DEFAULT);
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        let d = NewDomain {
            dom: 7,
            name: "guest",
            uuid,
            vcpus: 1,
            max_vcpus: 2,
            target_kib: 8192,
            static_max_kib: 16384,
            store: (0x1234, 2),
            console: Some((0x5678, 1)),
            start_time: 42,
        };
        s.write_domain(&d).unwrap();
        let vm = "/vm/12345678-9abc-def0-0123-456789abcdef";
        let r = |s: &mut Store, dom, p: &str| s.read(dom, p).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r(&mut s, 7, "vm").as_deref(), Ok(vm));
        assert_eq!(r(&mut s, 7, "name").as_deref(), Ok("guest"));
        assert_eq!(r(&mut s, 7, "domid").as_deref(), Ok("7"));
        assert_eq!(r(&mut s, 7, "memory/target").as_deref(), Ok("8192"));
        assert_eq!(r(&mut s, 7, "memory/static-max").as_deref(), Ok("16384"));
        assert_eq!(r(&mut s, 7, "cpu/1/availability").as_deref(), Ok("offline"));
        assert_eq!(r(&mut s, 7, "console/ring-ref").as_deref(), Ok("22136"));
        assert_eq!(r(&mut s, 7, &format!("{vm}/name")).as_deref(), Ok("guest"));
        assert_eq!(r(&mut s, 7, &format!("{vm}/uuid")).as_deref(), Ok(&vm[4..]));
        // The domain writes its own directories, not dom0's.
        s.write(7, "control/shutdown", b"poweroff").unwrap();
        s.write(7, "data/x", b"1").unwrap();
        assert_eq!(s.write(7, "memory/target", b"1"), Err(Errno::EACCES));
        assert_eq!(s.write(7, "name", b"x"), Err(Errno::EACCES));
        assert_eq!(s.write(7, &format!("{vm}/name"), b"x"), Err(Errno::EACCES));
        // Another domain sees none of it.
        assert_eq!(s.read(8, "/local/domain/7/name"), Err(Errno::EACCES));
        assert_eq!(s.read(8, &format!("{vm}/name")), Err(Errno::EACCES));
        // Destroy removes the home, the vm directory and the backends' entries.
        s.write(DOM0, "/local/domain/0/backend/vbd/7/51712/state", b"4")
            .unwrap();
        s.write(DOM0, "/local/domain/0/backend/vbd/8/51712/state", b"4")
            .unwrap();
        s.write(DOM0, "/local/domain/0/backend/console/7/0/state", b"4")
            .unwrap();
        s.write(DOM0, "/local/domain/0/backend/vif/7/0/state", b"4")
            .unwrap();
        let before = s.node_count();
        s.remove_domain(7);
        for p in [
            "/local/domain/7",
            vm,
            "/local/domain/0/backend/vbd/7",
            "/local/domain/0/backend/console/7",
            "/local/domain/0/backend/vif/7",
        ] {
            assert_eq!(s.read(DOM0, p), Err(Errno::ENOENT), "{p}");
        }
        assert!(
            s.read(DOM0, "/local/domain/0/backend/vbd/8/51712/state")
                .is_ok()
        );
        assert!(s.node_count() < before);
        assert_eq!(s.nodes_of(7), 0, "the domain's own nodes went with it");
        // Writing it again after an earlier domain of the id starts clean.
        s.write(DOM0, "/local/domain/7/stale", b"x").unwrap();
        s.write_domain(&d).unwrap();
        assert_eq!(s.read(DOM0, "/local/domain/7/stale"), Err(Errno::ENOENT));
    }
}
