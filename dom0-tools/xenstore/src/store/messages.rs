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

/// A child list as Xen keeps it: each name and a NUL.
fn child_list(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}

/// `XS_DIRECTORY_PART`'s reply for the child list `list` of a node of generation `gen`
/// from byte `off` (Xen's `send_directory_part`): the generation and a NUL, as many whole
/// names as fit one message, and one more NUL when the list ends there.
fn directory_part(generation: u64, list: &[u8], off: usize) -> Vec<u8> {
    let mut out = Vec::from(format!("{generation}").as_bytes());
    out.push(0);
    if off >= list.len() {
        out.push(0);
        return out;
    }
    let max = XENSTORE_PAYLOAD_MAX - out.len() - 1;
    let mut len = 0;
    for name in list[off..].split_inclusive(|&b| b == 0) {
        if len + name.len() > max {
            break;
        }
        len += name.len();
    }
    out.extend_from_slice(&list[off..off + len]);
    if off + len == list.len() {
        out.push(0);
    }
    out
}

/// The message types that read or change the tree: they may run in a transaction.
fn on_tree(msg_type: u32) -> bool {
    matches!(
        msg_type,
        XS_READ
            | XS_DIRECTORY
            | XS_DIRECTORY_PART
            | XS_GET_PERMS
            | XS_WRITE
            | XS_MKDIR
            | XS_RM
            | XS_SET_PERMS
    )
}

/// One message of a type [`on_tree`] on view `v`.
fn tree_message(v: &mut tree::View, msg_type: u32, p: &[u8]) -> Reply {
    match msg_type {
        XS_READ => v.read(path_arg(one_arg(p)?)?),
        XS_DIRECTORY => Ok(child_list(&v.directory(path_arg(one_arg(p)?)?)?.1)),
        XS_DIRECTORY_PART => {
            let [path, off] = args::<2>(p)?;
            // Xen reads the offset with `atoi`: anything else is 0.
            let off = core::str::from_utf8(off)
                .ok()
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(0);
            let (generation, names) = v.directory(path_arg(path)?)?;
            Ok(directory_part(generation, &child_list(&names), off))
        }
        XS_GET_PERMS => {
            let mut out = Vec::new();
            for perm in v.get_perms(path_arg(one_arg(p)?)?)? {
                out.extend_from_slice(perm.text().as_bytes());
                out.push(0);
            }
            Ok(out)
        }
        XS_WRITE => {
            let at = p.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
            v.write(path_arg(&p[..at])?, &p[at + 1..])
                .map(|()| OK.into())
        }
        XS_MKDIR => v.mkdir(path_arg(one_arg(p)?)?).map(|()| OK.into()),
        XS_RM => v.rm(path_arg(one_arg(p)?)?).map(|()| OK.into()),
        XS_SET_PERMS => {
            let Some((0, body)) = p.split_last() else {
                return Err(Errno::EINVAL);
            };
            let mut parts = body.split(|&b| b == 0);
            let path = path_arg(parts.next().ok_or(Errno::EINVAL)?)?;
            let perms = parts
                .map(|s| Perm::parse(s).ok_or(Errno::EINVAL))
                .collect::<Result<Vec<_>, _>>()?;
            v.set_perms(path, &perms).map(|()| OK.into())
        }
        _ => Err(Errno::ENOSYS),
    }
}

impl Store {
    /// Takes bytes of the message stream `id` sends: every complete message is handled
    /// and its reply queued. Returns how many bytes were taken: fewer than given when
    /// `id`'s output is full (it must read first) or, for a domU, when
    /// [`Quota::outstanding`] replies wait to be taken. A header announcing more than
    /// [`XENSTORE_PAYLOAD_MAX`] bytes gets an `E2BIG` reply and the rest of `bytes` is
    /// dropped, so that the stream starts again at the next write.
    pub fn feed(&mut self, id: ConnId, bytes: &[u8]) -> usize {
        self.feed_some(id, bytes, usize::MAX).0
    }

    /// [`Store::feed`], handling at most `max` messages: how many bytes were taken, and
    /// how many messages handled.
    pub fn feed_some(&mut self, id: ConnId, bytes: &[u8], max: usize) -> (usize, usize) {
        let mut taken = 0;
        let mut handled = 0;
        let outstanding = self.quota.outstanding;
        while taken < bytes.len() && handled < max {
            let Some(c) = self.conns.get_mut(&id) else {
                return (bytes.len(), handled);
            };
            if c.output.len() + MESSAGE_MAX > OUTPUT_MAX
                || (c.dom != DOM0 && c.reply_ends.len() >= outstanding)
            {
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
                c.queue(&reply, true);
                return (bytes.len(), handled + 1);
            }
            if c.input.len() < XsdSockmsg::SIZE + hdr.len as usize {
                continue;
            }
            let msg = core::mem::take(&mut c.input);
            self.handle(id, hdr, &msg[XsdSockmsg::SIZE..]);
            handled += 1;
        }
        (taken, handled)
    }

    /// Handles one complete message from `id` and queues the reply.
    pub(super) fn handle(&mut self, id: ConnId, hdr: XsdSockmsg, payload: &[u8]) {
        let Some(dom) = self.conns.get(&id).map(|c| c.dom) else {
            return;
        };
        let reply = self.dispatch(id, dom, hdr, payload);
        let added = reply.is_ok();
        let mut out = match reply {
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
        // The reply names the request's transaction (Xen echoes the header).
        out[8..12].copy_from_slice(&hdr.tx_id.to_le_bytes());
        if let Some(c) = self.conns.get_mut(&id) {
            c.queue(&out, true);
        }
        if hdr.msg_type == XS_WATCH && added {
            // Xen fires a new watch once at once, after the reply.
            self.fire_initial(id);
        }
    }

    pub(super) fn dispatch(&mut self, id: ConnId, dom: DomId, hdr: XsdSockmsg, p: &[u8]) -> Reply {
        let msg_type = hdr.msg_type;
        if hdr.tx_id != 0 {
            let known = self
                .conns
                .get(&id)
                .is_some_and(|c| c.txs.contains_key(&hdr.tx_id));
            if !known {
                // Xen's answer to an unknown transaction id.
                return Err(Errno::ENOENT);
            }
            if on_tree(msg_type) {
                return self.in_transaction(id, hdr.tx_id, |v| tree_message(v, msg_type, p));
            }
            if msg_type == XS_TRANSACTION_START {
                // Not nested (Xen).
                return Err(Errno::EBUSY);
            }
        }
        if on_tree(msg_type) {
            return self.on_tree(dom, |v| tree_message(v, msg_type, p));
        }
        match msg_type {
            XS_TRANSACTION_START => {
                // Xen's argument is an empty string; it is not looked at.
                let tx = self.transaction_start(id)?;
                let mut out = Vec::from(format!("{tx}").as_bytes());
                out.push(0);
                Ok(out)
            }
            XS_TRANSACTION_END => {
                let commit = match one_arg(p)? {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(Errno::EINVAL),
                };
                if hdr.tx_id == 0 {
                    return Err(Errno::ENOENT);
                }
                self.transaction_end(id, hdr.tx_id, commit)
                    .map(|()| OK.into())
            }
            XS_WATCH => {
                let [path, token] = args::<2>(p)?;
                self.watch(id, path_arg(path)?, token).map(|()| OK.into())
            }
            XS_UNWATCH => {
                let [path, token] = args::<2>(p)?;
                self.unwatch(id, path_arg(path)?, token).map(|()| OK.into())
            }
            XS_RESET_WATCHES => {
                self.reset_watches(id);
                self.drop_transactions(id);
                Ok(OK.into())
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
            // `XS_CONTROL` (Xen's `xenstore-control`): dom0 only, and of its commands only
            // Xenia's `watched <domid> <path>`: "1" if that domain watches the absolute
            // `path` or an ancestor of it, else "0" (`xl mem-set`'s test for a balloon
            // driver). Xen's own commands (`log`, `quota`, ...) are not served: `ENOSYS`.
            XS_CONTROL => {
                if dom != DOM0 {
                    return Err(Errno::EACCES);
                }
                let Some((0, body)) = p.split_last() else {
                    return Err(Errno::EINVAL);
                };
                let mut parts = body.split(|&b| b == 0);
                if parts.next() != Some(b"watched".as_slice()) {
                    return Err(Errno::ENOSYS);
                }
                let (Some(d), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(Errno::EINVAL);
                };
                let d = parse_domid(d)?;
                let path = path_arg(path)?;
                if !path.starts_with('/') {
                    return Err(Errno::EINVAL);
                }
                Ok(if self.watched_by(d, path) {
                    b"1\0"
                } else {
                    b"0\0"
                }
                .into())
            }
            // Unknown types, and those a client does not send (`XS_WATCH_EVENT`,
            // `XS_ERROR`) or Xenia does not serve (`XS_RESUME`, `XS_SET_TARGET`): Xen's
            // `ENOSYS`.
            _ => Err(Errno::ENOSYS),
        }
    }
}
