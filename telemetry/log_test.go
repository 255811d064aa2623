package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/junction-go/junction/telemetry"
)

// TestRequestIDStaysAtTheTop: the request id of the context is a
// top-level field of every record, before and after a group is opened.
func TestRequestIDStaysAtTheTop(t *testing.T) {
	var b bytes.Buffer
	log := telemetry.NewLogger(&b, slog.LevelInfo, "order-service", "order-service-1")
	ctx := telemetry.WithRequestID(context.Background(), "r-1")
	log.InfoContext(ctx, "plain")
	log.WithGroup("http").With("method", "GET").InfoContext(ctx, "grouped", "path", "/x")
	for i, line := range bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if rec["request_id"] != "r-1" || rec["service"] != "order-service" {
			t.Errorf("record %d = %s, want request_id and service at the top", i, line)
		}
		if i == 1 {
			g, _ := rec["http"].(map[string]any)
			if g["method"] != "GET" || g["path"] != "/x" || g["request_id"] != nil {
				t.Errorf("grouped record = %s, want method and path in the group and no request_id there", line)
			}
		}
	}
}

// TestECSFieldNames: with FormatECS the fields carry Elastic Common Schema
// names, for an ELK pipeline.
func TestECSFieldNames(t *testing.T) {
	var b bytes.Buffer
	log := telemetry.NewLoggerFormat(&b, slog.LevelInfo, telemetry.FormatECS, "order-service", "order-service-1")
	log.ErrorContext(telemetry.WithRequestID(context.Background(), "r-9"), "request failed", "err", "boom")
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"message": "request failed", "log.level": "error", "service.name": "order-service",
		"service.node.name": "order-service-1", "http.request.id": "r-9", "error.message": "boom", "ecs.version": "8.11.0"} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v (record %s)", k, rec[k], want, b.String())
		}
	}
	if _, ok := rec["@timestamp"]; !ok {
		t.Errorf("no @timestamp in %s", b.String())
	}
}
