//! The message stream of a connection: framing, checks and one handler per `xs_wire` type.

use super::*;

type Reply = Result<Vec<u8>, Errno>;

const OK: &[u8] = b"OK\0";

/// The one NUL-terminated string `payload` must be (Xen's `onearg`).
pub(super) fn one_arg(payload: &[u8]) -> Result<&[u8], Errno> {
    match payload.split_last() {
        Some((0, s)) if !s.contains(&0) => Ok(s),
        _ => Err(Errno::EINVAL),
    }
}

/// `payload` as exactly `N` NUL-terminated strings.
pub(super) fn args<const N: usize>(payload: &[u8]) -> Result<[&[u8]; N], Errno> {
    let Some((0, body)) = payload.split_last() else {
        return Err(Errno::EINVAL);
    };
    let mut out = [&[][..]; N];
    let mut parts = body.split(|&b| b == 0);
    for slot in &mut out {
        *slot = parts.next().ok_or(Errno::EINVAL)?;
    }
    if parts.next().is_some() {
        return Err(Errno::EINVAL);
    }
    Ok(out)
}

pub(super) fn parse_domid(s: &[u8]) -> Result<DomId, Errno> {
    let text = core::str::from_utf8(s).map_err(|_| Errno::EINVAL)?;
    let n: u32 = text.parse().map_err(|_| Errno::EINVAL)?;
    if n >= DOMID_FIRST_RESERVED {
        return Err(Errno::EINVAL);
    }
    Ok(n as DomId)
}

pub(super) fn message(msg_type: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(XsdSockmsg::SIZE + payload.len());
    m.extend_from_slice(
        &XsdSockmsg {
            msg_type,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        }
        .to_bytes(),
    );
    m.extend_from_slice(payload);
    m
}

/// A path argument: UTF-8 (anything else has characters xenstore refuses anyway).
pub(super) fn path_arg(s: &[u8]) -> Result<&str, Errno> {
    core::str::from_utf8(s).map_err(|_| Errno::EINVAL)
}

impl Store {
    /// Takes bytes of the message stream `id` sends: every complete message is handled
    /// and its reply queued. Returns how many bytes were taken: fewer than given when
    /// `id`'s output is full (it must read first). A header announcing more than
    /// [`XENSTORE_PAYLOAD_MAX`] bytes gets an `E2BIG` reply and the rest of `bytes` is
    /// dropped, so that the stream starts again at the next write.
    pub fn feed(&mut self, id: ConnId, bytes: &[u8]) -> usize {
        let mut taken = 0;
        while taken < bytes.len() {
            let Some(c) = self.conns.get_mut(&id) else {
                return bytes.len();
            };
            if c.output.len() + MESSAGE_MAX > OUTPUT_MAX {
                break;
            }
            let want = if c.input.len() < XsdSockmsg::SIZE {
                XsdSockmsg::SIZE - c.input.len()
            } else {
                let hdr = XsdSockmsg::from_bytes(&c.input).unwrap_or_default();
                XsdSockmsg::SIZE + hdr.len as usize - c.input.len()
            };
            let n = want.min(bytes.len() - taken);
            c.input.extend_from_slice(&bytes[taken..taken + n]);
            taken += n;
            let Some(hdr) = XsdSockmsg::from_bytes(&c.input) else {
                continue;
            };
            if hdr.len as usize > XENSTORE_PAYLOAD_MAX {
                c.input.clear();
                let reply = message(XS_ERROR, hdr.req_id, b"E2BIG\0");
                c.output.extend(reply);
                return bytes.len();
            }
            if c.input.len() < XsdSockmsg::SIZE + hdr.len as usize {
                continue;
            }
            let msg = core::mem::take(&mut c.input);
            self.handle(id, hdr, &msg[XsdSockmsg::SIZE..]);
        }
        taken
    }

    /// Handles one complete message from `id` and queues the reply.
    pub(super) fn handle(&mut self, id: ConnId, hdr: XsdSockmsg, payload: &[u8]) {
        let Some(dom) = self.conns.get(&id).map(|c| c.dom) else {
            return;
        };
        let reply = if hdr.tx_id != 0 && hdr.msg_type != XS_TRANSACTION_START {
            // No transaction exists, so none has this id (Xen's answer to an unknown id).
            Err(Errno::ENOENT)
        } else {
            self.dispatch(id, dom, hdr.msg_type, payload)
        };
        let added = reply.is_ok();
        let out = match reply {
            Ok(body) if body.len() <= XENSTORE_PAYLOAD_MAX => {
                message(hdr.msg_type, hdr.req_id, &body)
            }
            Ok(_) => message(XS_ERROR, hdr.req_id, b"E2BIG\0"),
            Err(e) => {
                let mut p = Vec::from(error_string(e).as_bytes());
                p.push(0);
                message(XS_ERROR, hdr.req_id, &p)
            }
        };
        if let Some(c) = self.conns.get_mut(&id) {
            c.output.extend(out);
        }
        if hdr.msg_type == XS_WATCH && added {
            // Xen fires a new watch once at once, after the reply.
            self.fire_initial(id);
        }
    }

    pub(super) fn dispatch(&mut self, id: ConnId, dom: DomId, msg_type: u32, p: &[u8]) -> Reply {
        match msg_type {
            XS_READ => self.read(dom, path_arg(one_arg(p)?)?),
            XS_DIRECTORY => {
                let mut out = Vec::new();
                for name in self.directory(dom, path_arg(one_arg(p)?)?)? {
                    out.extend_from_slice(name.as_bytes());
                    out.push(0);
                }
                Ok(out)
            }
            XS_GET_PERMS => {
                let mut out = Vec::new();
                for perm in self.get_perms(dom, path_arg(one_arg(p)?)?)? {
                    out.extend_from_slice(perm.text().as_bytes());
                    out.push(0);
                }
                Ok(out)
            }
            XS_WRITE => {
                let at = p.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
                self.write(dom, path_arg(&p[..at])?, &p[at + 1..])
                    .map(|()| OK.into())
            }
            XS_MKDIR => self.mkdir(dom, path_arg(one_arg(p)?)?).map(|()| OK.into()),
            XS_RM => self.rm(dom, path_arg(one_arg(p)?)?).map(|()| OK.into()),
            XS_SET_PERMS => {
                let Some((0, body)) = p.split_last() else {
                    return Err(Errno::EINVAL);
                };
                let mut parts = body.split(|&b| b == 0);
                let path = path_arg(parts.next().ok_or(Errno::EINVAL)?)?;
                let perms = parts
                    .map(|s| Perm::parse(s).ok_or(Errno::EINVAL))
                    .collect::<Result<Vec<_>, _>>()?;
                self.set_perms(dom, path, &perms).map(|()| OK.into())
            }
            XS_WATCH => {
                let [path, token] = args::<2>(p)?;
                self.watch(id, path_arg(path)?, token).map(|()| OK.into())
            }
            XS_UNWATCH => {
                let [path, token] = args::<2>(p)?;
                self.unwatch(id, path_arg(path)?, token).map(|()| OK.into())
            }
            XS_GET_DOMAIN_PATH => {
                let d = parse_domid(one_arg(p)?)?;
                let mut out = Vec::from(home_path(d).as_bytes());
                out.push(0);
                Ok(out)
            }
            XS_INTRODUCE => {
                if dom != DOM0 {
                    return Err(Errno::EACCES);
                }
                let [d, mfn, port] = args::<3>(p)?;
                let d = parse_domid(d)?;
                let num = |s: &[u8]| -> Result<u64, Errno> {
                    core::str::from_utf8(s)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .ok_or(Errno::EINVAL)
                };
                let (mfn, port) = (num(mfn)?, num(port)?);
                if d == DOM0 || port > u64::from(u32::MAX) {
                    return Err(Errno::EINVAL);
                }
                self.introduce(d, mfn, port as u32);
                Ok(OK.into())
            }
            XS_RELEASE => {
                if dom != DOM0 {
                    return Err(Errno::EACCES);
                }
                let d = parse_domid(one_arg(p)?)?;
                if !self.is_introduced(d) {
                    return Err(Errno::ENOENT);
                }
                // The caller closes dom0's end of the channel when it sees the ring gone.
                self.release(d);
                Ok(OK.into())
            }
            XS_IS_DOMAIN_INTRODUCED => {
                if dom != DOM0 {
                    return Err(Errno::EACCES);
                }
                let d = parse_domid(one_arg(p)?)?;
                Ok(if self.is_introduced(d) {
                    b"T\0"
                } else {
                    b"F\0"
                }
                .into())
            }
            XS_TRANSACTION_START | XS_TRANSACTION_END => Err(Errno::ENOSYS),
            _ => Err(Errno::ENOSYS),
        }
    }
}
