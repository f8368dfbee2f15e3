//! Under stress: a connection cut mid-stream, the rate limit, and a burst to
//! a large group.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_stream_of_1000_sends_loses_and_duplicates_nothing() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.tcp).await;
    let options = ClientOptions {
        reconnect_min: Duration::from_millis(50),
        ..ClientOptions::default()
    };
    let (alice, mut alice_ev) =
        login_with(&proxy.addr.to_string(), "alice", "phone", options).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (_bob, mut bob_ev) = login(&server.tcp.to_string(), "bob", "phone").await;

    let sends = (0..1000).map(|i| {
        let alice = alice.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let content = pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: format!("{i}"),
                    mentions: vec![],
                })),
            };
            let r = alice
                .send_with_id(Peer::user("bob"), content, format!("c{i:04}"))
                .await;
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        })
    });
    let sends: Vec<_> = sends.collect();
    // Cut the connection once Bob has seen some of the stream.
    messages(&mut bob_ev, 200).await;
    proxy.cut();
    let acked_at_cut = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        acked_at_cut < 1000,
        "the cut came mid-stream ({acked_at_cut} acknowledged)"
    );
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    let mut acked = HashSet::new();
    for s in sends {
        let ack = s.await.expect("task").expect("every send is acknowledged");
        acked.insert(ack.seq);
    }
    assert_eq!(acked.len(), 1000, "1000 distinct seqs");
    assert_eq!(acked.iter().max(), Some(&1000), "gap-free: 1..=1000");
    // Bob (who got the first 200 already) sees the rest, in order, once.
    let mut rest = messages(&mut bob_ev, 800).await;
    rest.extend(drain_messages(&mut bob_ev, Duration::from_millis(500)).await);
    assert_eq!(rest.len(), 800, "no duplicates");
    let seqs: Vec<u64> = rest.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (201..=1000).collect::<Vec<_>>(), "in order");
    let history = _bob
        .history("d:alice:bob", 0, false, 500)
        .await
        .expect("history");
    assert_eq!(history.messages.len(), 500);
    let mut texts: Vec<String> = Vec::new();
    let mut from = 0;
    loop {
        let page = _bob
            .history("d:alice:bob", from, false, 500)
            .await
            .expect("history");
        texts.extend(page.messages.iter().map(|m| text_of(m).to_owned()));
        from = page.messages.last().map_or(from, |m| m.seq);
        if !page.has_more {
            break;
        }
    }
    let unique: HashSet<&String> = texts.iter().collect();
    assert_eq!(
        (texts.len(), unique.len()),
        (1000, 1000),
        "each send stored exactly once"
    );
    drop(proxy);
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_with_an_error_and_the_client_retries_sends() {
    let limits = Limits {
        rate_per_second: 20,
        rate_burst: 20,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let (alice, _a) = login(&server.tcp.to_string(), "alice", "phone").await;
    let (bob, mut bob_ev) = login(&server.tcp.to_string(), "bob", "phone").await;
    // Plain requests beyond the burst are refused with RateLimited.
    let mut limited = 0;
    for _ in 0..40 {
        if let Err(e) = bob.friends().await {
            assert_eq!(e.code(), Some(ErrorCode::RateLimited));
            limited += 1;
        }
    }
    assert!(limited > 0, "some requests were rate limited");
    // Sends are retried by the client until accepted: all 60 arrive.
    let sends: Vec<_> = (0..60)
        .map(|i| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.send_text(Peer::user("bob"), format!("{i}")).await })
        })
        .collect();
    for s in sends {
        s.await.expect("task").expect("SENT eventually");
    }
    let got = messages(&mut bob_ev, 60).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<_>>()
    );
    server.stop().await;
}

/// A sender whose frames arrive all at once must not starve the writers of
/// a group it fans out to: the members' queues stay short, nobody is kicked
/// as a slow consumer, and everyone gets every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_burst_to_a_large_group_reaches_everyone_without_kicks() {
    const MEMBERS: usize = 100;
    const BURST: usize = 300;
    let limits = Limits {
        queue_len: 128,
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    let mut readers = Vec::new();
    for name in &names {
        let mut s = raw_login(&server, name).await;
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut buf = bytes::BytesMut::new();
            while seqs.len() < BURST {
                match Frame::decode(&mut buf, 1 << 20) {
                    Ok(Some(f)) => match Packet::from_frame(&f) {
                        Ok(Packet::MessagePush(p)) => {
                            seqs.push(p.message.map(|m| m.seq).unwrap_or(0));
                        }
                        Ok(Packet::Kicked(k)) => return Err(format!("kicked: {}", k.message)),
                        _ => {}
                    },
                    Ok(None) => match tokio::time::timeout(WAIT, s.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Err(format!("closed or silent after {}", seqs.len())),
                    },
                    Err(e) => return Err(format!("bad frame: {e}")),
                }
            }
            Ok(seqs)
        }));
    }
    let (owner, mut owner_events) = login(&server.tcp.to_string(), "owner", "phone").await;
    tokio::spawn(async move { while owner_events.recv().await.is_some() {} });
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("big", &members).await.expect("group");
    // The whole burst in one write, so the server finds it all buffered.
    let mut burst = bytes::BytesMut::new();
    for i in 0..BURST {
        let send = Packet::Send(pb::SendRequest {
            client_msg_id: format!("burst-{i}"),
            to: Some(pb::send_request::To::GroupId(group.group_id.clone())),
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: format!("message {i}"),
                    mentions: vec![],
                })),
            }),
        });
        burst.put(
            send.to_frame(PacketId::new())
                .to_bytes(usize::MAX)
                .expect("encode"),
        );
    }
    let mut sender = raw_login(&server, "owner").await;
    sender.write_all(&burst).await.expect("write burst");
    for (i, r) in readers.into_iter().enumerate() {
        let seqs = r
            .await
            .expect("reader task")
            .unwrap_or_else(|e| panic!("m{i}: {e}"));
        let first = seqs[0];
        assert!(
            seqs.iter().enumerate().all(|(k, s)| *s == first + k as u64),
            "m{i} got a gap or reordering"
        );
    }
    server.stop().await;
}
