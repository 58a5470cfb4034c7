//go:build ort

package ortbench

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// libEnv names the environment variable holding the path of
// libonnxruntime.so.1 (what setup.sh prints).
const libEnv = "MLFLEET_ORT_LIB"

func init() {
	ortInit = initORT
	newORT = newORTSession
}

func initORT() (func(), error) {
	lib := os.Getenv(libEnv)
	if lib == "" {
		return nil, errclass.Invalid(libEnv, "%s is empty: set it to the path that examples/ortbench/setup.sh prints", libEnv)
	}
	if _, err := os.Stat(lib); err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "%s=%q", libEnv, lib)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("onnxruntime %s=%q: initialize: %w", libEnv, lib, err)
	}
	return func() { _ = ort.DestroyEnvironment() }, nil
}

// ortSession is one onnxruntime session with its inputs bound. Tensor
// outputs are allocated by onnxruntime on the first run and reused as
// preallocated outputs afterwards; sequence, map and string outputs are
// allocated (and freed) on every run.
type ortSession struct {
	sess    *ort.DynamicAdvancedSession
	opts    *ort.SessionOptions
	inputs  []ort.Value
	outs    []ort.Value // preallocated outputs; nil: allocate per run
	names   []string
	scratch []ort.Value
}

func newORTSession(ex *example, cols []column) (r ortRunner, err error) {
	s := &ortSession{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	ins, outs, err := ort.GetInputOutputInfo(ex.path)
	if err != nil {
		return nil, &refusedError{fmt.Errorf("model %s: onnxruntime input/output info: %w", ex.name, err)}
	}
	if s.opts, err = ort.NewSessionOptions(); err != nil {
		return nil, err
	}
	if err := s.opts.SetIntraOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := s.opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := s.opts.SetExecutionMode(ort.ExecutionModeSequential); err != nil {
		return nil, err
	}
	var inNames []string
	for _, in := range ins {
		inNames = append(inNames, in.Name)
		c := findColumn(cols, in.Name)
		if c == nil {
			return nil, errclass.Invalid("inputs", "model %s: onnxruntime wants input %q, which %s.inputs.json lacks", ex.name, in.Name, ex.name)
		}
		v, err := ortValue(c)
		if err != nil {
			return nil, fmt.Errorf("model %s: input %s: %w", ex.name, in.Name, err)
		}
		s.inputs = append(s.inputs, v)
	}
	for _, o := range outs {
		s.names = append(s.names, o.Name)
	}
	s.sess, err = ort.NewDynamicAdvancedSession(ex.path, inNames, s.names, s.opts)
	if err != nil {
		return nil, &refusedError{fmt.Errorf("model %s: onnxruntime session: %w", ex.name, err)}
	}
	s.outs = make([]ort.Value, len(s.names))
	s.scratch = make([]ort.Value, len(s.names))
	// First run: let onnxruntime allocate, keep the numeric tensors.
	if err := s.sess.Run(s.inputs, s.scratch); err != nil {
		return nil, fmt.Errorf("model %s: onnxruntime run: %w", ex.name, err)
	}
	for i, v := range s.scratch {
		switch v.(type) {
		case *ort.Tensor[float32], *ort.Tensor[float64], *ort.Tensor[int64], *ort.Tensor[int32]:
			s.outs[i] = v
		default:
			_ = v.Destroy()
		}
		s.scratch[i] = nil
	}
	return s, nil
}

func findColumn(cols []column, name string) *column {
	for i := range cols {
		if cols[i].name == name {
			return &cols[i]
		}
	}
	return nil
}

func ortValue(c *column) (ort.Value, error) {
	shape := make([]int64, len(c.shape))
	for i, d := range c.shape {
		shape[i] = int64(d)
	}
	switch {
	case c.f32 != nil:
		return ort.NewTensor(ort.NewShape(shape...), c.f32)
	case c.f64 != nil:
		return ort.NewTensor(ort.NewShape(shape...), c.f64)
	case c.i64 != nil:
		return ort.NewTensor(ort.NewShape(shape...), c.i64)
	}
	t, err := ort.NewStringTensor(ort.NewShape(shape...))
	if err != nil {
		return nil, err
	}
	if err := t.SetContents(c.str); err != nil {
		_ = t.Destroy()
		return nil, err
	}
	return t, nil
}

// runOnce runs the session; outputs not preallocated are in s.scratch and
// must be released with release.
func (s *ortSession) runOnce() error {
	for i, v := range s.outs {
		s.scratch[i] = v
	}
	return s.sess.Run(s.inputs, s.scratch)
}

func (s *ortSession) release() {
	for i, v := range s.scratch {
		if s.outs[i] == nil && v != nil {
			_ = v.Destroy()
		}
		s.scratch[i] = nil
	}
}

func (s *ortSession) run() error {
	err := s.runOnce()
	s.release()
	return err
}

func (s *ortSession) outputs() (map[string]value, error) {
	if err := s.runOnce(); err != nil {
		return nil, err
	}
	defer s.release()
	vals := make(map[string]value, len(s.names))
	var errs []error
	for i, v := range s.scratch {
		cv, err := ortToValue(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("output %s: %w", s.names[i], err))
			continue
		}
		vals[s.names[i]] = cv
	}
	return vals, errors.Join(errs...)
}

func (s *ortSession) close() {
	for _, v := range s.inputs {
		_ = v.Destroy()
	}
	for _, v := range s.outs {
		if v != nil {
			_ = v.Destroy()
		}
	}
	if s.sess != nil {
		_ = s.sess.Destroy()
	}
	if s.opts != nil {
		_ = s.opts.Destroy()
	}
	*s = ortSession{}
}

func dims(s ort.Shape) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

func floats[T float32 | float64 | int64 | int32](d []T) []float64 {
	out := make([]float64, len(d))
	for i, x := range d {
		out[i] = float64(x)
	}
	return out
}

// ortToValue converts an onnxruntime output.
func ortToValue(v ort.Value) (value, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return value{shape: dims(t.GetShape()), nums: floats(t.GetData())}, nil
	case *ort.Tensor[float64]:
		return value{shape: dims(t.GetShape()), nums: floats(t.GetData())}, nil
	case *ort.Tensor[int64]:
		return value{shape: dims(t.GetShape()), nums: floats(t.GetData()), ints: true}, nil
	case *ort.Tensor[int32]:
		return value{shape: dims(t.GetShape()), nums: floats(t.GetData()), ints: true}, nil
	case *ort.StringTensor:
		strs, err := t.GetContents()
		if err != nil {
			return value{}, err
		}
		return value{shape: dims(t.GetShape()), strs: strs}, nil
	case *ort.Sequence:
		elems, err := t.GetValues()
		if err != nil {
			return value{}, err
		}
		out := value{maps: make([]map[string]float64, 0, len(elems))}
		for i, e := range elems {
			m, ok := e.(*ort.Map)
			if !ok {
				return value{}, fmt.Errorf("sequence element %d is a %T, not a map", i, e)
			}
			kv, vv, err := m.GetKeysAndValues()
			if err != nil {
				return value{}, fmt.Errorf("sequence element %d: %w", i, err)
			}
			keys, err := ortToValue(kv)
			if err != nil {
				return value{}, fmt.Errorf("sequence element %d keys: %w", i, err)
			}
			vals, err := ortToValue(vv)
			if err != nil {
				return value{}, fmt.Errorf("sequence element %d values: %w", i, err)
			}
			mm := make(map[string]float64, len(vals.nums))
			for j, x := range vals.nums {
				switch {
				case keys.strs != nil && j < len(keys.strs):
					mm[keys.strs[j]] = x
				case j < len(keys.nums):
					mm[strconv.FormatInt(int64(keys.nums[j]), 10)] = x
				default:
					return value{}, fmt.Errorf("sequence element %d: fewer keys than values", i)
				}
			}
			out.maps = append(out.maps, mm)
		}
		return out, nil
	case nil:
		return value{}, errors.New("onnxruntime returned no value")
	}
	return value{}, fmt.Errorf("onnxruntime value %T is not compared", v)
}
