//! Counts the HTTP/2 frames of one connection, both ways, to close a client that floods frames
//! which ask for no answer: PRIORITY and WINDOW_UPDATE (CVE-2019-9513's class).
//!
//! h2 handles such frames without limit; Envoy's codec closes the connection past
//! `max_inbound_priority_frames_per_stream` (by default 100 per stream the client opened, plus
//! 100) and `max_inbound_window_update_frames_per_data_frame_sent` (10 per DATA frame it sent,
//! with 2 per stream and 5 to start). augur applies the same bounds, from the flags of those
//! names, to the bytes its connection stream passes: only the 9-byte frame headers are looked
//! at, payloads are skipped.

use std::fmt;

use super::Limits;

/// The client connection preface (RFC 9113 §3.4), before the first frame.
const PREFACE_LEN: usize = 24;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const WINDOW_UPDATE: u8 = 0x8;

/// A frame type sent past its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// More PRIORITY frames than the streams opened allow.
    Priority,
    /// More WINDOW_UPDATE frames than the DATA frames sent allow.
    WindowUpdate,
}

impl fmt::Display for Flood {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flood::Priority => "HTTP/2 PRIORITY flood",
            Flood::WindowUpdate => "HTTP/2 WINDOW_UPDATE flood",
        })
    }
}

/// Frame boundaries in one direction's bytes: 9-byte headers, payloads skipped.
#[derive(Debug)]
struct Frames {
    /// Bytes still to skip: the preface, or the rest of a payload.
    skip: usize,
    header: [u8; 9],
    have: usize,
}

impl Frames {
    fn new(skip: usize) -> Self {
        Self {
            skip,
            header: [0; 9],
            have: 0,
        }
    }

    /// Calls `frame` with the type of every frame whose header ends in `bytes`.
    fn feed(&mut self, mut bytes: &[u8], mut frame: impl FnMut(u8)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let n = (self.header.len() - self.have).min(bytes.len());
            if let (Some(to), Some(from)) = (
                self.header.get_mut(self.have..self.have + n),
                bytes.get(..n),
            ) {
                to.copy_from_slice(from);
            }
            self.have += n;
            bytes = bytes.get(n..).unwrap_or_default();
            if self.have == self.header.len() {
                let [l0, l1, l2, kind, ..] = self.header;
                self.skip = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                self.have = 0;
                frame(kind);
            }
        }
    }
}

/// The counts of one HTTP/2 connection, and their bounds.
#[derive(Debug)]
pub struct FrameCounts {
    inbound: Frames,
    outbound: Frames,
    streams: u64,
    priority: u64,
    window_updates: u64,
    data_sent: u64,
    priority_per_stream: u64,
    window_updates_per_data_frame: u64,
}

impl FrameCounts {
    /// Counts under `limits`; `None` when both bounds are off.
    pub fn new(limits: &Limits) -> Option<Self> {
        let priority_per_stream = limits.http2_max_inbound_priority_frames_per_stream;
        let window_updates_per_data_frame =
            limits.http2_max_inbound_window_update_frames_per_data_frame_sent;
        (priority_per_stream > 0 || window_updates_per_data_frame > 0).then(|| Self {
            inbound: Frames::new(PREFACE_LEN),
            outbound: Frames::new(0),
            streams: 0,
            priority: 0,
            window_updates: 0,
            data_sent: 0,
            priority_per_stream,
            window_updates_per_data_frame,
        })
    }

    /// Takes in bytes the client sent (from the preface on); the flood, once a bound is passed.
    pub fn received(&mut self, bytes: &[u8]) -> Result<(), Flood> {
        let (mut streams, mut priority, mut window_updates) = (0, 0, 0);
        self.inbound.feed(bytes, |kind| match kind {
            HEADERS => streams += 1,
            PRIORITY => priority += 1,
            WINDOW_UPDATE => window_updates += 1,
            _ => {}
        });
        self.streams += streams;
        self.priority += priority;
        self.window_updates += window_updates;
        let on = |bound: u64| bound > 0;
        if on(self.priority_per_stream)
            && self.priority > self.priority_per_stream.saturating_mul(1 + self.streams)
        {
            return Err(Flood::Priority);
        }
        let window_updates_allowed = self
            .window_updates_per_data_frame
            .saturating_mul(self.data_sent)
            .saturating_add(self.streams)
            .saturating_mul(2)
            .saturating_add(5);
        if on(self.window_updates_per_data_frame) && self.window_updates > window_updates_allowed {
            return Err(Flood::WindowUpdate);
        }
        Ok(())
    }

    /// Takes in bytes augur sent the client.
    pub fn sent(&mut self, bytes: &[u8]) {
        let mut data = 0;
        self.outbound.feed(bytes, |kind| {
            if kind == DATA {
                data += 1;
            }
        });
        self.data_sent += data;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> FrameCounts {
        FrameCounts::new(&Limits::default()).expect("on by default")
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn client(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x4, &[0; 6])); // SETTINGS
        for f in frames {
            bytes.extend_from_slice(f);
        }
        bytes
    }

    #[test]
    fn priority_frames_past_100_per_stream_are_a_flood() {
        let priority = frame(PRIORITY, &[0, 0, 0, 0, 16]);
        for chunk in [1, 7, 4096] {
            let mut c = counts();
            let bytes = client(&vec![priority.clone(); 100]);
            assert!(bytes.chunks(chunk).all(|b| c.received(b).is_ok()));
            assert_eq!(
                c.received(&priority),
                Err(Flood::Priority),
                "chunks of {chunk}"
            );
        }
        // A stream opened allows 100 more.
        let mut c = counts();
        let mut frames = vec![frame(HEADERS, &[0x82; 8])];
        frames.extend(vec![priority.clone(); 200]);
        assert!(c.received(&client(&frames)).is_ok());
        assert_eq!(c.received(&priority), Err(Flood::Priority));
    }

    #[test]
    fn window_updates_are_bounded_by_the_data_frames_sent() {
        let update = frame(WINDOW_UPDATE, &[0, 0, 0, 1]);
        let mut c = counts();
        assert!(c.received(&client(&vec![update.clone(); 5])).is_ok());
        assert_eq!(c.received(&update), Err(Flood::WindowUpdate));
        // Ten more for each DATA frame augur sent, found in writes cut anywhere.
        let mut c = counts();
        let mut out = frame(0x4, &[]);
        out.extend(frame(DATA, &[7; 100]));
        out.extend(frame(DATA, &[7; 30]));
        for b in out.chunks(3) {
            c.sent(b);
        }
        assert!(c.received(&client(&vec![update.clone(); 45])).is_ok());
        assert_eq!(c.received(&update), Err(Flood::WindowUpdate));
    }

    #[test]
    fn zero_bounds_are_off() {
        let off = Limits {
            http2_max_inbound_priority_frames_per_stream: 0,
            http2_max_inbound_window_update_frames_per_data_frame_sent: 0,
            ..Limits::default()
        };
        assert!(FrameCounts::new(&off).is_none());
        let mut c = FrameCounts::new(&Limits {
            http2_max_inbound_priority_frames_per_stream: 0,
            ..Limits::default()
        })
        .expect("window updates still counted");
        let priority = frame(PRIORITY, &[0, 0, 0, 0, 16]);
        assert!(c.received(&client(&vec![priority; 1000])).is_ok());
    }

    #[test]
    fn payloads_are_skipped_whatever_they_hold() {
        // A DATA payload full of bytes that look like PRIORITY headers counts as one DATA frame.
        let fake = frame(PRIORITY, &[0, 0, 0, 0, 16]).repeat(500);
        let mut c = counts();
        assert!(c.received(&client(&[frame(DATA, &fake)])).is_ok());
        assert_eq!(c.priority, 0);
    }
}
