// sarama scenario for tests/interop/test_sarama.py: admin, produce, consume, commit-and-resume,
// consumer group, each with sarama's default configuration (Debian's golang-github-shopify-sarama-dev,
// whose default Version is 0.8.2: Produce v0, Fetch v0, OffsetCommit v1, ListOffsets v0,
// Metadata v0). Only what sarama itself refuses to run without is changed: a SyncProducer needs
// Return.Successes, a ClusterAdmin doing all of this needs Version >= 0.11 (CreateTopics v1,
// DescribeConfigs v0, DeleteTopics v1), and a ConsumerGroup needs Version >= 0.10.2 (JoinGroup v1,
// SyncGroup v0, OffsetCommit v2, Fetch v3, Produce v2).
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
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

const messages = 12

func must(step string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", step, err)
		os.Exit(1)
	}
}

type groupHandler struct {
	mu   sync.Mutex
	seen map[string]bool
	want int
	done chan struct{}
	once sync.Once
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		h.seen[string(m.Value)] = true
		n := len(h.seen)
		h.mu.Unlock()
		s.MarkMessage(m, "")
		if n >= h.want {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

func runGroup(brokers []string, topic, group string, want int, timeout time.Duration) int {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V0_10_2_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	must("NewConsumerGroup", err)
	h := &groupHandler{seen: map[string]bool{}, want: want, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "group consume: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-time.After(timeout):
	}
	cancel()
	must("group close", cg.Close())
	return len(h.seen)
}

func main() {
	brokers := strings.Split(os.Args[1], ",")
	topic, group := os.Args[2], os.Args[3]
	out := map[string]interface{}{}

	// Admin, at the lowest version sarama's ClusterAdmin accepts.
	acfg := sarama.NewConfig()
	acfg.Version = sarama.V0_11_0_0
	admin, err := sarama.NewClusterAdmin(brokers, acfg)
	must("NewClusterAdmin", err)
	must("CreateTopic", admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false))
	var topics map[string]sarama.TopicDetail
	for i := 0; i < 50; i++ { // a new topic reaches every broker's metadata shortly after the answer
		topics, err = admin.ListTopics()
		must("ListTopics", err)
		if _, ok := topics[topic]; ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out["listed_partitions"] = topics[topic].NumPartitions
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	must("DescribeConfig", err)
	for _, e := range entries {
		if e.Name == "cleanup.policy" {
			out["cleanup_policy"] = e.Value
		}
	}

	// Produce, default config (Produce v0, message format v0).
	pcfg := sarama.NewConfig()
	pcfg.Producer.Return.Successes = true
	producer, err := sarama.NewSyncProducer(brokers, pcfg)
	must("NewSyncProducer", err)
	var offsets []string
	for i := 0; i < messages; i++ {
		p, o, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("v%d", i)),
		})
		must("SendMessage", err)
		offsets = append(offsets, fmt.Sprintf("%d:%d", p, o))
	}
	must("producer close", producer.Close())
	out["produced"] = len(offsets)

	// Consume every partition from the oldest offset, default config (Fetch v0, ListOffsets v0).
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	must("NewClient", err)
	consumer, err := sarama.NewConsumerFromClient(client)
	must("NewConsumer", err)
	var values []string
	parts, err := client.Partitions(topic)
	must("Partitions", err)
	for _, p := range parts {
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		must("GetOffset", err)
		if newest == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		must("ConsumePartition", err)
		for {
			select {
			case m := <-pc.Messages():
				values = append(values, string(m.Value))
				if m.Offset+1 >= newest {
					goto next
				}
			case err := <-pc.Errors():
				must("consume", err)
			case <-time.After(15 * time.Second):
				must("consume", fmt.Errorf("partition %d: timed out after %d messages", p, len(values)))
			}
		}
	next:
		must("partition consumer close", pc.Close())
	}
	sort.Strings(values)
	out["consumed"] = values

	// Commit and resume with the offset manager, default config (OffsetCommit v1, OffsetFetch v1).
	om, err := sarama.NewOffsetManagerFromClient(group+"-manual", client)
	must("NewOffsetManager", err)
	pom, err := om.ManagePartition(topic, 0)
	must("ManagePartition", err)
	pom.MarkOffset(3, "resume-here")
	must("pom close", pom.Close())
	must("om close", om.Close())
	om2, err := sarama.NewOffsetManagerFromClient(group+"-manual", client)
	must("NewOffsetManager again", err)
	pom2, err := om2.ManagePartition(topic, 0)
	must("ManagePartition again", err)
	next, meta := pom2.NextOffset()
	out["resumed_offset"] = next
	out["resumed_metadata"] = meta
	must("pom2 close", pom2.Close())
	must("om2 close", om2.Close())
	must("consumer close", consumer.Close())
	must("client close", client.Close())

	// Consumer group: read everything and commit; a second run of the group resumes at the end.
	out["group_first_run"] = runGroup(brokers, topic, group, messages, 60*time.Second)
	out["group_second_run"] = runGroup(brokers, topic, group, 1, 8*time.Second)

	must("DeleteTopic", admin.DeleteTopic(topic))
	must("admin close", admin.Close())
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}
