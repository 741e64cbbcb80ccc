// The peer's persistence, as the original built it: a kafkajs consumer whose `eachMessage`
// inserts the message as one row (the original used `prisma.chats.create`; here one
// `INSERT` with pg, which is no slower). No batching, no idempotency.
//
//   KAFKA_BROKERS=127.0.0.1:19092 KAFKA_TOPIC=chats DATABASE_URL=postgres://… node consumer.js
"use strict";

const { Kafka, logLevel } = require("kafkajs");
const { Pool } = require("pg");

async function main() {
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
  const kafka = new Kafka({
    clientId: "chat-consumer",
    brokers: process.env.KAFKA_BROKERS.split(","),
    logLevel: logLevel.WARN,
  });
  const consumer = kafka.consumer({ groupId: process.env.KAFKA_GROUP || "chats" });
  await consumer.connect();
  await consumer.subscribe({ topic: process.env.KAFKA_TOPIC || "chats", fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const data = JSON.parse(message.value.toString());
      await pool.query(
        "INSERT INTO peer.chats (id, group_id, message, name, created_at) VALUES ($1, $2, $3, $4, $5)",
        [data.id, data.group_id, data.message, data.name, data.created_at],
      );
    },
  });
  console.log("consuming");
  const stop = async () => {
    await consumer.disconnect().catch(() => {});
    await pool.end().catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
