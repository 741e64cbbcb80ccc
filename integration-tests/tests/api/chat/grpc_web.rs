//! Browsers: `Subscribe`, `SendMessage` and friends over gRPC-web on HTTP/1.1.

use super::*;

/// Reads gRPC-web frames from an HTTP/1.1 response body as they arrive.
struct GrpcWebFrames {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

enum Frame {
    Data(Vec<u8>),
    Trailers(String),
}

impl GrpcWebFrames {
    async fn next(&mut self) -> Frame {
        loop {
            if self.buffer.len() >= 5 {
                let len = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
                if self.buffer.len() >= 5 + len {
                    let flag = self.buffer[0];
                    let payload: Vec<u8> = self.buffer.drain(..5 + len).skip(5).collect();
                    return if flag & 0x80 != 0 {
                        Frame::Trailers(String::from_utf8_lossy(&payload).into_owned())
                    } else {
                        Frame::Data(payload)
                    };
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("a chunk within 5 s")
                .expect("body readable")
                .expect("body not finished");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    async fn next_event(&mut self) -> v1::subscribe_response::Event {
        use prost::Message;
        match self.next().await {
            Frame::Data(payload) => v1::SubscribeResponse::decode(payload.as_slice())
                .unwrap()
                .event
                .unwrap(),
            Frame::Trailers(t) => panic!("stream ended: {t}"),
        }
    }
}

fn grpc_web_request<M: prost::Message>(
    http: &reqwest::Client,
    app: &TestApp,
    method: &str,
    token: &str,
    msg: &M,
) -> reqwest::RequestBuilder {
    let payload = msg.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    http.post(format!(
        "http://{}/quickchat.v1.ChatService/{method}",
        app.addr
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("authorization", format!("Bearer {token}"))
    .body(body)
}

#[tokio::test]
async fn a_browser_subscribes_and_sends_over_grpc_web_on_http1() {
    use prost::Message;
    use v1::subscribe_response::Event as WebEvent;

    let app = spawn_app().await;
    let room = room(&app).await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();

    let response = grpc_web_request(
        &http,
        &app,
        "Subscribe",
        &room.ann,
        &v1::SubscribeRequest {
            group_id: room.group.id.clone(),
            since: None,
        },
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    let mut frames = GrpcWebFrames {
        response,
        buffer: Vec::new(),
    };
    let WebEvent::Joined(joined) = frames.next_event().await else {
        panic!("joined comes first")
    };
    assert!(joined.online.iter().any(|m| m.name == "Ann"));

    // Bob (native) writes; the browser sees it live.
    let from_bob = bob.send_and_ack("b1", "hello browser").await;
    let message = loop {
        if let WebEvent::Message(m) = frames.next_event().await {
            break m;
        }
    };
    assert_eq!(message, from_bob);

    // The browser sends with a unary gRPC-web call; Bob sees it and so does Ann's own
    // subscription (a browser tab shows its messages from the feed).
    let sent = grpc_web_request(
        &http,
        &app,
        "SendMessage",
        &room.ann,
        &v1::SendMessageRequest {
            group_id: room.group.id.clone(),
            client_message_id: "web-1".into(),
            body: "hi from the web".into(),
        },
    )
    .send()
    .await
    .unwrap();
    let mut answer = GrpcWebFrames {
        response: sent,
        buffer: Vec::new(),
    };
    let Frame::Data(payload) = answer.next().await else {
        panic!("a response message")
    };
    let sent = v1::SendMessageResponse::decode(payload.as_slice())
        .unwrap()
        .message
        .unwrap();
    assert!(matches!(answer.next().await, Frame::Trailers(t) if t.contains("grpc-status:0")));
    assert_eq!((sent.sender_name.as_str(), sent.offset), ("Ann", 2));
    assert_eq!(bob.next_message().await, sent);
    let echoed = loop {
        if let WebEvent::Message(m) = frames.next_event().await {
            break m;
        }
    };
    assert_eq!(echoed, sent);

    // Typing over unary reaches the native client.
    let typing = grpc_web_request(
        &http,
        &app,
        "SendTyping",
        &room.ann,
        &v1::SendTypingRequest {
            group_id: room.group.id.clone(),
        },
    )
    .send()
    .await
    .unwrap();
    assert!(typing.status().is_success());
    let who = bob.next_where(|e| match e {
        Event::Typing(t) => t.member,
        _ => None,
    });
    assert_eq!(who.await.name, "Ann");
}
