// KafkaJS scenario for tests/interop/test_kafkajs.py: admin, produce, consume in a group,
// commit-and-resume, with KafkaJS's default configuration. Prints one JSON line of findings.
const { Kafka, logLevel } = require("kafkajs");

const [brokersArg, topic, group] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "wb-kafkajs", brokers: brokersArg.split(","), logLevel: logLevel.WARN });
const N = 12;

async function consume(want) {
  const consumer = kafka.consumer({ groupId: group });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, want === 0 ? 8000 : 60000);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          got.push(message.value.toString());
          if (want > 0 && got.length >= want) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect(); // commits what was consumed
  return got;
}

(async () => {
  const out = {};
  const admin = kafka.admin();
  await admin.connect();
  out.created = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  out.listed = (await admin.listTopics()).includes(topic);
  const described = await admin.describeConfigs({
    resources: [{ type: 2, name: topic, configNames: ["cleanup.policy"] }],
    includeSynonyms: false,
  });
  out.cleanup_policy = described.resources[0].configEntries[0].configValue;

  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: Array.from({ length: N }, (_, i) => ({ key: `k${i}`, value: `v${i}` })) });
  await producer.disconnect();

  out.first_run = (await consume(N)).sort();
  out.second_run = await consume(0); // resumes from the committed offsets: nothing left
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  out.committed = offsets[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
  await admin.deleteTopics({ topics: [topic] });
  await admin.disconnect();
  console.log(JSON.stringify(out));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
