package manifest_test

import (
	"fmt"

	"github.com/mlfleet/mlfleet/shared/manifest"
)

// An ONNX iris classifier: four float32 measurements in, a class index and
// three class probabilities out.
func Example() {
	m := &manifest.Manifest{
		APIVersion: manifest.APIVersion,
		Name:       "iris",
		Runtime:    manifest.RuntimeONNX,
		Models:     []manifest.ModelRef{{Name: "iris", Version: 1}},
		Scoring:    manifest.Scoring{OutputLabels: []string{"setosa", "versicolor", "virginica"}},
		Schema: manifest.Schema{
			Inputs: []manifest.Field{
				{Name: "sepal_length", Type: manifest.TypeFloat32},
				{Name: "sepal_width", Type: manifest.TypeFloat32},
				{Name: "petal_length", Type: manifest.TypeFloat32},
				{Name: "petal_width", Type: manifest.TypeFloat32},
			},
			Outputs: []manifest.Field{
				{Name: "label", Type: manifest.TypeInt64},
				{Name: "probabilities", Type: manifest.TypeFloat32, Shape: []int{3}},
			},
		},
		SampleData: []map[string]any{
			{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
		},
	}
	c, err := m.Canonical()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(c))

	parsed, err := manifest.Parse(c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(parsed.Models[0].Path, parsed.Scoring.TimeoutMs)

	// Scoring rows are checked against the same schema.
	err = manifest.ValidateRow(parsed.Schema, map[string]any{"sepal_length": "wide"})
	fmt.Println(err)
	// Output:
	// {"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":1,"path":"iris.onnx"}],"scoring":{"outputLabels":["setosa","versicolor","virginica"],"timeoutMs":10000},"schema":{"inputs":[{"name":"sepal_length","type":"float32"},{"name":"sepal_width","type":"float32"},{"name":"petal_length","type":"float32"},{"name":"petal_width","type":"float32"}],"outputs":[{"name":"label","type":"int64"},{"name":"probabilities","type":"float32","shape":[3]}]},"sampleData":[{"petal_length":1.4,"petal_width":0.2,"sepal_length":5.1,"sepal_width":3.5}]}
	// iris.onnx 10000
	// sepal_length: want a number, got a string
}

// Parse names the field at fault as a JSON path.
func ExampleParse() {
	_, err := manifest.Parse([]byte(`{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx",
		"models":[{"name":"iris","version":1}],
		"schema":{"inputs":[{"name":"x","type":"float32"},{"name":"y","type":"float128"}]}}`))
	fmt.Println(err)
	// Output:
	// schema.inputs[1].type: unknown data type "float128"
}
