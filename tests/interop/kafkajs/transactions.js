// KafkaJS transactions for tests/interop/test_kafkajs.py: a committed and an aborted transaction,
// sendOffsets inside a transaction, then a read_committed consumer. Prints one JSON line of findings.
const { Kafka, logLevel } = require("kafkajs");

const [brokersArg, topic, group] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "wb-kafkajs-txn", brokers: brokersArg.split(","), logLevel: logLevel.WARN });

(async () => {
  const out = {};
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });

  const producer = kafka.producer({ transactionalId: `${topic}-txn`, maxInFlightRequests: 1, idempotent: true });
  await producer.connect();
  let txn = await producer.transaction();
  await txn.send({ topic, messages: [{ value: "c0" }, { value: "c1" }, { value: "c2" }] });
  await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions: [{ partition: 0, offset: "1" }] }] });
  await txn.commit();
  txn = await producer.transaction();
  await txn.send({ topic, messages: [{ value: "a0" }, { value: "a1" }] });
  await txn.abort();
  await producer.disconnect();

  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  out.committed_offset = Number(offsets[0].partitions.find((p) => p.partition === 0).offset);
  await admin.disconnect();

  const consumer = kafka.consumer({ groupId: `${group}-reader`, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 60000);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          got.push(message.value.toString());
          if (got.length >= 3) {
            setTimeout(() => {
              clearTimeout(timer);
              resolve();
            }, 3000); // a little longer: an aborted record would show up now
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  out.read_committed = got.sort();
  console.log(JSON.stringify(out));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
