//! Link configuration over rtnetlink: just enough to bring an interface up.
//!
//! The socket is opened by the calling thread, so it talks to the network namespace that
//! thread is in. Callers run this from a thread that has entered (or created) the pod's
//! namespace.

use std::time::Instant;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tracing::debug;

/// Sets the IFF_UP flag on the interface called `name` in the calling thread's network
/// namespace and waits for the kernel's acknowledgement.
pub(crate) fn set_link_up(name: &str) -> Result<(), String> {
    let started = Instant::now();
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    socket
        .bind_auto()
        .map_err(|e| format!("bind netlink socket: {e}"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| format!("connect netlink socket: {e}"))?;

    let mut link = LinkMessage::default();
    // Index 0 with IFLA_IFNAME: the kernel looks the interface up by name.
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    link.attributes
        .push(LinkAttribute::IfName(name.to_string()));

    let mut packet = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    packet.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket
        .send(&buf[..], 0)
        .map_err(|e| format!("send RTM_SETLINK: {e}"))?;

    let mut rx = vec![0u8; 8192];
    let size = socket
        .recv(&mut &mut rx[..], 0)
        .map_err(|e| format!("receive netlink ack: {e}"))?;
    let reply: NetlinkMessage<RouteNetlinkMessage> =
        NetlinkMessage::deserialize(&rx[..size]).map_err(|e| format!("decode netlink ack: {e}"))?;
    let outcome = match reply.payload {
        NetlinkPayload::Error(err) => match err.code {
            None => Ok(()),
            Some(code) => Err(format!(
                "RTM_SETLINK {name} up: {}",
                std::io::Error::from_raw_os_error(-code.get())
            )),
        },
        other => Err(format!(
            "unexpected netlink reply to RTM_SETLINK: {other:?}"
        )),
    };
    debug!(
        link = name,
        ok = outcome.is_ok(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "netlink RTM_SETLINK up"
    );
    outcome
}
