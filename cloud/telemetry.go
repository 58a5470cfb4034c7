package cloud

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// Telemetry batches are kept gzipped: every batch repeats the same metric
// names and profile keys, and compresses about 5-8 times.

// storedTelemetry is a kept telemetry batch: its JSON, gzipped.
type storedTelemetry struct {
	Gzip []byte `json:"gz"`
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// packTelemetry compresses t for the store.
func packTelemetry(t *twin.Telemetry) (*storedTelemetry, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode telemetry %d: %w", t.Seq, err)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw) / 4)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compress telemetry %d: %w", t.Seq, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress telemetry %d: %w", t.Seq, err)
	}
	return &storedTelemetry{Gzip: buf.Bytes()}, nil
}

// unpack decodes the batch into v, reading at most twin.MaxTelemetry bytes
// of JSON (what the cloud accepts from a device in the first place).
func (s *storedTelemetry) unpack(v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(s.Gzip))
	if err != nil {
		return fmt.Errorf("stored telemetry: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, twin.MaxTelemetry+1))
	if err != nil {
		return fmt.Errorf("stored telemetry: %w", err)
	}
	if len(raw) > twin.MaxTelemetry {
		return fmt.Errorf("stored telemetry is over %d bytes", twin.MaxTelemetry)
	}
	return json.Unmarshal(raw, v)
}
