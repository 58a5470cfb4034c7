package scorer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
)

// checkRows compares per-row result objects with scikit-learn's outputs.
func compareRows(t *testing.T, ex *example, rows []map[string]any, labelKey, probKey string) {
	t.Helper()
	if len(rows) != len(ex.rows) {
		t.Fatalf("%d result rows, want %d", len(rows), len(ex.rows))
	}
	wantLabels := ex.expected["label"].data
	wantProbs := ex.expected["probabilities"].data
	k := len(wantProbs) / len(ex.rows)
	for i, r := range rows {
		if fmt.Sprint(r[labelKey]) != fmt.Sprint(wantLabels[i]) {
			t.Errorf("row %d: label %v, want %v", i, r[labelKey], wantLabels[i])
		}
		probs := rowProbs(t, r[probKey], k)
		for j := 0; j < k; j++ {
			if want := wantProbs[i*k+j].(float64); !near(probs[j], want) {
				t.Errorf("row %d: probability %d = %v, want %v", i, j, probs[j], want)
			}
		}
	}
}

// rowProbs reads probabilities given as an array or a ZipMap object.
func rowProbs(t *testing.T, v any, k int) []float64 {
	t.Helper()
	out := make([]float64, k)
	switch x := v.(type) {
	case []any:
		for j := range out {
			out[j] = x[j].(float64)
		}
	case map[string]any:
		for j := range out {
			out[j] = x[strconv.Itoa(j)].(float64)
		}
	default:
		t.Fatalf("probabilities %v (%T)", v, v)
	}
	return out
}

func TestEndpointsMatchScikitLearn(t *testing.T) {
	tests := []struct {
		model   string
		probKey string
		labels  []string
	}{
		{"iris_logreg", "probabilities", []string{"setosa", "versicolor", "virginica"}},
		{"sensor_rf", "probabilities", nil},
		{"iris_mlp", "probabilities", nil},
		{"iris_logreg_zipmap", "output_probability", nil},
		{"iris_tree_strings", "probabilities", nil},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			ex := loadExample(t, tc.model)
			ts := startServer(t, writeManifest(t, ex.manifest(t, tc.labels), tc.model+".onnx"))
			recs := ex.records()

			// Azure ML /score.
			code, body := ts.post(t, "/score", map[string]any{"input_df": recs})
			if code != 200 {
				t.Fatalf("/score: %d %s", code, body)
			}
			var score struct{ Result []map[string]any }
			if err := json.Unmarshal(body, &score); err != nil {
				t.Fatal(err)
			}
			compareRows(t, ex, score.Result, "label", tc.probKey)
			if tc.labels != nil {
				byLabel := score.Result[0]["probabilities_by_label"].(map[string]any)
				probs := score.Result[0]["probabilities"].([]any)
				for j, l := range tc.labels {
					if byLabel[l] != probs[j] {
						t.Errorf("by label %q = %v, want %v", l, byLabel[l], probs[j])
					}
				}
			}

			// MLflow /invocations, every input format.
			split := map[string]any{"columns": ex.features, "data": ex.rows}
			var instances [][]float64
			instances = append(instances, ex.rows...)
			cols := map[string]any{}
			for j, f := range ex.features {
				var c []float64
				for _, r := range ex.rows {
					c = append(c, r[j])
				}
				cols[f] = c
			}
			for _, req := range []map[string]any{
				{"dataframe_split": split},
				{"dataframe_records": recs},
				{"instances": recs},
				{"instances": instances},
				{"inputs": cols},
			} {
				code, body := ts.post(t, "/invocations", req)
				if code != 200 {
					t.Fatalf("/invocations %v: %d %s", keys(req), code, body)
				}
				var inv struct{ Predictions []map[string]any }
				if err := json.Unmarshal(body, &inv); err != nil {
					t.Fatal(err)
				}
				compareRows(t, ex, inv.Predictions, "label", tc.probKey)
			}

			// Open Inference Protocol v2: one tensor per feature, and X [N, K].
			var flat []float64
			for _, r := range ex.rows {
				flat = append(flat, r...)
			}
			var perFeature []any
			for _, f := range ex.features {
				perFeature = append(perFeature, map[string]any{"name": f, "shape": []int{len(ex.rows)}, "datatype": "FP32", "data": cols[f]})
			}
			name := ts.man.Name
			for _, req := range []map[string]any{
				{"id": "abc", "inputs": perFeature},
				{"inputs": []any{map[string]any{"name": "X", "shape": []int{len(ex.rows), len(ex.features)}, "datatype": "FP32", "data": flat}}},
			} {
				code, body := ts.post(t, "/v2/models/"+name+"/infer", req)
				if code != 200 {
					t.Fatalf("v2 infer: %d %s", code, body)
				}
				checkV2(t, ex, body, tc.probKey)
			}
		})
	}
}

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

func checkV2(t *testing.T, ex *example, body []byte, probKey string) {
	t.Helper()
	var resp struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name     string `json:"name"`
			Datatype string `json:"datatype"`
			Shape    []int  `json:"shape"`
			Data     []any  `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	rows := make([]map[string]any, len(ex.rows))
	for i := range rows {
		rows[i] = map[string]any{}
	}
	for _, o := range resp.Outputs {
		if o.Shape[0] != len(ex.rows) {
			t.Fatalf("output %s shape %v", o.Name, o.Shape)
		}
		k := len(o.Data) / len(ex.rows)
		for i := range rows {
			switch {
			case o.Datatype == "BYTES" && o.Name == probKey:
				var m map[string]any
				if err := json.Unmarshal([]byte(o.Data[i].(string)), &m); err != nil {
					t.Fatal(err)
				}
				rows[i][o.Name] = m
			case k == 1:
				rows[i][o.Name] = o.Data[i]
			default:
				rows[i][o.Name] = o.Data[i*k : (i+1)*k]
			}
		}
	}
	compareRows(t, ex, rows, "label", probKey)
}

// The schema the cloud infers from the graph: one input X of shape [4].
func TestInferredSchemaX(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	m := ex.manifest(t, nil)
	m["schema"] = map[string]any{"inputs": []any{map[string]any{"name": "X", "type": "float32", "shape": []int{4}}}}
	m["sampleData"] = []any{map[string]any{"X": []float64{5.1, 3.5, 1.4, 0.2}}}
	ts := startServer(t, writeManifest(t, m, "iris_logreg.onnx"))
	var rows []map[string]any
	for _, r := range ex.rows {
		rows = append(rows, map[string]any{"X": r})
	}
	code, body := ts.post(t, "/score", map[string]any{"input_df": rows})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var score struct{ Result []map[string]any }
	if err := json.Unmarshal(body, &score); err != nil {
		t.Fatal(err)
	}
	compareRows(t, ex, score.Result, "label", "probabilities")
	// Nested form of the same value.
	code, body = ts.post(t, "/invocations", map[string]any{"instances": []any{[]float64{5.1, 3.5, 1.4, 0.2}}})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
}
