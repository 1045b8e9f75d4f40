// kafka-go scenario for tests/interop/test_kafkago.py: admin, produce, consume, consumer group,
// commit-and-resume, with kafka-go's default configuration (Debian's
// golang-github-segmentio-kafka-go-dev 0.2.1: CreateTopics v0, DeleteTopics v1, Metadata v1,
// Produce v2 with message format v1, Fetch v2, ListOffsets v1, JoinGroup v1, SyncGroup v0,
// OffsetCommit v2, OffsetFetch v1).
//
// Prints one JSON object of findings; exits non-zero on the first failure.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

const messages = 12

func must(step string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", step, err)
		os.Exit(1)
	}
}

func readGroup(brokers []string, topic, group string, n int, timeout time.Duration) []string {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: group})
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for len(got) < n {
		m, err := r.ReadMessage(ctx) // with a GroupID, commits the message before returning it
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			must("group ReadMessage", err)
		}
		got = append(got, string(m.Value))
	}
	must("group reader close", r.Close())
	return got
}

func main() {
	brokers := strings.Split(os.Args[1], ",")
	topic, group := os.Args[2], os.Args[3]
	out := map[string]interface{}{}

	conn, err := kafka.Dial("tcp", brokers[0])
	must("Dial", err)
	must("CreateTopics", conn.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}))
	var parts []kafka.Partition
	for i := 0; i < 50; i++ {
		parts, err = conn.ReadPartitions(topic)
		if err == nil && len(parts) == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out["partitions"] = len(parts)

	w := kafka.NewWriter(kafka.WriterConfig{Brokers: brokers, Topic: topic})
	var msgs []kafka.Message
	for i := 0; i < messages; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	must("WriteMessages", w.WriteMessages(context.Background(), msgs...))
	must("writer close", w.Close())
	out["produced"] = messages

	// Consume each partition directly (no group) from its first offset to its last.
	var values []string
	for _, p := range parts {
		pc, err := kafka.DialLeader(context.Background(), "tcp", brokers[0], topic, p.ID)
		must("DialLeader", err)
		first, last, err := pc.ReadOffsets()
		must("ReadOffsets", err)
		must("pc close", pc.Close())
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for off := first; off < last; off++ {
			m, err := r.ReadMessage(ctx)
			must(fmt.Sprintf("partition %d ReadMessage", p.ID), err)
			values = append(values, string(m.Value))
		}
		cancel()
		must("reader close", r.Close())
	}
	sort.Strings(values)
	out["consumed"] = values

	// A group reads half, closes (its commits made), and a new member resumes with the rest.
	first := readGroup(brokers, topic, group, messages/2, 60*time.Second)
	rest := readGroup(brokers, topic, group, messages-len(first), 60*time.Second)
	all := append(append([]string{}, first...), rest...)
	sort.Strings(all)
	out["group_first_run"] = len(first)
	out["group_all"] = all

	must("DeleteTopics", conn.DeleteTopics(topic))
	must("conn close", conn.Close())
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}
