// The peer: the chat server of the original design, as it was built. A Socket.IO server on
// the Redis Streams adapter (@socket.io/redis-streams-adapter over ioredis, chosen for its
// connection-state recovery), rooms named after the group id from the handshake, and every
// message handed to the others in the room. With KAFKA_BROKERS set, each message is first
// produced to Kafka with kafkajs, one `producer.send` per message (acks: all), as the
// original's `produceMessage` did; `consumer.js` writes them to PostgreSQL.
//
// Additions for measurement only: the sender's ack callback is called once the message is
// produced (the original did not acknowledge), and the startup line on stdout gives the port.
//
//   PORT=0 REDIS_URL=redis://127.0.0.1:6379 STREAM_NAME=bench node server.js
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { Redis } = require("ioredis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const redis = new Redis(process.env.REDIS_URL || "redis://127.0.0.1:6379");
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    cors: { origin: "*" },
    adapter: createAdapter(redis, { streamName: process.env.STREAM_NAME || "socket.io" }),
    connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
  });

  let produceMessage = null;
  if (process.env.KAFKA_BROKERS) {
    const kafka = new Kafka({
      clientId: "chat",
      brokers: process.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.WARN,
    });
    const topic = process.env.KAFKA_TOPIC || "chats";
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 6 }] }).catch(() => {});
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    produceMessage = async (message) => {
      await producer.send({ topic, messages: [{ value: JSON.stringify(message) }] });
    };
  }

  io.use((socket, next) => {
    const room = socket.handshake.auth.room || socket.handshake.headers.room;
    if (!room) {
      return next(new Error("Invalid room"));
    }
    socket.room = room;
    next();
  });

  io.on("connection", (socket) => {
    socket.join(socket.room);
    socket.on("message", async (data, ack) => {
      try {
        if (produceMessage) {
          await produceMessage(data);
        }
        socket.to(socket.room).emit("message", data);
        if (typeof ack === "function") ack({ ok: true });
      } catch (err) {
        console.error("message not produced:", err.message);
        if (typeof ack === "function") ack({ ok: false });
      }
    });
  });

  httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    console.log(`listening on http://127.0.0.1:${httpServer.address().port}`);
  });
  const stop = () => {
    io.close();
    redis.disconnect();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
