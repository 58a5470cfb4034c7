package scorer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/profile"
)

func TestProfileWindows(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	m := ex.manifest(t, []string{"setosa", "versicolor", "virginica"})
	m["baseline"] = map[string]any{"features": map[string]any{
		"sepal_length": map[string]any{"edges": []float64{5, 6, 7}, "counts": []float64{1, 1, 1, 1}},
	}}
	cfg := writeManifest(t, m, "iris_logreg.onnx")
	clock := time.Date(2024, 6, 1, 12, 0, 10, 0, time.UTC)
	cfg.now = func() time.Time { return clock }
	cfg.ProfileWindow = time.Minute
	ts := startServer(t, cfg)
	get := func() (cur, last *profile.Window) {
		_, body, _ := ts.do(t, "GET", "/v1/profile", "", nil)
		var p struct{ Current, Last *profile.Window }
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p.Current, p.Last
	}
	recs := ex.records()
	if code, body := ts.post(t, "/score", map[string]any{"input_df": recs[:5]}); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if code, _ := ts.post(t, "/score", map[string]any{"input_df": []any{map[string]any{"sepal_length": "x"}}}); code != 400 {
		t.Fatal("bad row accepted")
	}
	cur, last := get()
	if last != nil || cur.Rows != 6 {
		t.Fatalf("rows %d last %v", cur.Rows, last)
	}
	sl := cur.Inputs["sepal_length"]
	if len(sl.Edges) != 3 || sl.Count != 6 || sl.TypeError != 1 || sl.Finite != 5 {
		t.Errorf("sepal_length %+v", sl)
	}
	if len(cur.Inputs["petal_width"].Edges) == 0 {
		t.Error("petal_width has no edges derived from the sample data")
	}
	if f := cur.Outputs["probabilities[setosa]"]; f == nil || f.Count != 5 {
		t.Errorf("outputs %v", cur.Outputs)
	}
	if f := cur.Outputs["label"]; f == nil || f.Kind != profile.Categorical {
		t.Errorf("label output %+v", f)
	}
	// The window closes after a minute.
	clock = clock.Add(time.Minute)
	if code, _ := ts.post(t, "/score", map[string]any{"input_df": recs[:2]}); code != 200 {
		t.Fatal("score failed")
	}
	cur, last = get()
	if last == nil || last.Rows != 6 || cur.Rows != 2 || !last.End.Equal(cur.Start) {
		t.Fatalf("after rotation: cur %d rows from %v, last %+v", cur.Rows, cur.Start, last)
	}
	// The two windows merge into the profile of all rows.
	if err := last.Merge(cur); err != nil {
		t.Fatal(err)
	}
	if last.Rows != 8 || last.Inputs["sepal_length"].Finite != 7 {
		t.Errorf("merged %+v", last.Inputs["sepal_length"])
	}
}
