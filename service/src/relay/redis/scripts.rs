//! The relay's Lua scripts, each in its own file under `lua/` (so it can be read and linted
//! as Lua), loaded into Redis once per node and run by SHA1.

/// A Lua script and the SHA1 digest Redis knows it by.
pub(super) struct Script {
    pub(super) body: String,
    pub(super) sha: String,
}

pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) init: Script,
    pub(super) replay: Script,
    pub(super) touch: Script,
    pub(super) leave: Script,
    pub(super) online: Script,
    pub(super) close: Script,
    pub(super) forget: Script,
}

/// Milliseconds of the Redis clock, so every node expires presence by the same clock.
pub(super) const NOW_MS: &str = include_str!("lua/now_ms.lua");

/// KEYS: meta, stream, dedupe, messages channel. ARGV: window, dedupe member ('' for none),
/// the message's fields as a JSON object, then the entry's field/value pairs. Stores a new
/// message and publishes it on the room's messages channel. Returns {'uninit'}, {'dup', epoch, entry}
/// or {'new', epoch, offset}.
pub(super) const PUBLISH: &str = include_str!("lua/publish.lua");

/// KEYS: meta, stream, dedupe. ARGV: seed offset, new epoch. Initialises the room unless
/// another node already has; returns {epoch, offset, 1 if this call initialised it}.
pub(super) const INIT: &str = include_str!("lua/init.lua");

/// KEYS: meta, stream. ARGV: epoch, after, up_to, window. Returns false when the epoch
/// differs, else {first offset held, entries with after < offset <= up_to}.
pub(super) const REPLAY: &str = include_str!("lua/replay.lua");

/// KEYS: presence(participant), online, names. ARGV: participant, node, ttl ms, name.
/// Marks the participant online on this node until now + ttl; returns 1 when no other node
/// has them online.
pub(super) const TOUCH: &str = include_str!("lua/touch.lua");

/// KEYS: presence(participant), online, names. ARGV: participant, node. Returns 1 when the
/// participant is no longer online on any node.
pub(super) const LEAVE: &str = include_str!("lua/leave.lua");

/// KEYS: online, names. Drops expired participants; returns {id, name, id, name, …}.
pub(super) const ONLINE: &str = include_str!("lua/online.lua");

/// KEYS: meta, stream, dedupe. Forgets the room's messages and counter.
pub(super) const CLOSE: &str = include_str!("lua/close.lua");

/// KEYS: online, names. ARGV: prefix of the per-participant presence keys. Forgets who is
/// online in the room.
pub(super) const FORGET: &str = include_str!("lua/forget.lua");
