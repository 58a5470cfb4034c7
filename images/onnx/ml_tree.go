package onnx

// TreeEnsembleClassifier and TreeEnsembleRegressor (ai.onnx.ml 1 and 3).
//
// At build time the trees are flattened into one slice of fixed-size nodes
// addressed by index (no maps, no pointers per node); leaf weights live in
// two parallel slices that leaves address by range. Evaluation walks each
// tree from its root with one comparison per level.

import (
	"math"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

type nodeMode uint8

const (
	modeLeaf nodeMode = iota
	modeLEQ
	modeLT
	modeGTE
	modeGT
	modeEQ
	modeNEQ
)

var nodeModeNames = map[string]nodeMode{
	"LEAF": modeLeaf, "BRANCH_LEQ": modeLEQ, "BRANCH_LT": modeLT, "BRANCH_GTE": modeGTE,
	"BRANCH_GT": modeGT, "BRANCH_EQ": modeEQ, "BRANCH_NEQ": modeNEQ,
}

type aggregate uint8

const (
	aggSum aggregate = iota
	aggAverage
	aggMin
	aggMax
)

// flatNode is one tree node. For a branch, next[1] is the node taken when
// the condition holds and next[0] the other; for a leaf, next[0]:next[1] is
// its range in the ensemble's weight slices.
type flatNode struct {
	thr      float64
	feature  int32
	next     [2]int32
	mode     nodeMode
	missTrue bool // a missing (NaN) feature value takes the true branch
}

// treeEnsemble is a compiled ensemble.
type treeEnsemble struct {
	nodes    []flatNode
	roots    []int32
	wTarget  []int32 // per weight: target or class index
	wValue   []float64
	nTargets int
	agg      aggregate
	post     postTransform
	base     []float64
	maxFeat  int  // largest feature id used
	allLEQ   bool // every branch is BRANCH_LEQ without a missing track: fast path
	hasMiss  bool
	nTrees   int
	allPos   bool // every weight >= 0
	oneClass int  // the only target id used, or -1
	single   bool // oneClass >= 0 and each leaf has at most one weight, kept in its thr
}

// compileTrees reads and checks the nodes_* attributes and the leaf weights
// (weightPrefix "class_" or "target_": treeids, nodeids, ids, weights) and
// flattens them. It records errors on b and returns nil on failure.
func compileTrees(b *NodeBuilder, weightPrefix string, nTargets int) *treeEnsemble {
	treeIDs := b.AttrInts("nodes_treeids", nil)
	nodeIDs := b.AttrInts("nodes_nodeids", nil)
	feats := b.AttrInts("nodes_featureids", nil)
	modes := b.AttrStrings("nodes_modes", nil)
	vals := attrFloatsOrTensor(b, "nodes_values")
	trues := b.AttrInts("nodes_truenodeids", nil)
	falses := b.AttrInts("nodes_falsenodeids", nil)
	miss := b.AttrInts("nodes_missing_value_tracks_true", nil)
	wTree := b.AttrInts(weightPrefix+"treeids", nil)
	wNode := b.AttrInts(weightPrefix+"nodeids", nil)
	wID := b.AttrInts(weightPrefix+"ids", nil)
	wVal := attrFloatsOrTensor(b, weightPrefix+"weights")
	if b.Err() != nil {
		return nil
	}
	n := len(treeIDs)
	if n == 0 {
		b.Errorf("attribute nodes_treeids is empty: the ensemble has no nodes")
		return nil
	}
	checkLen(b, "nodes_nodeids", len(nodeIDs), n, "nodes_treeids")
	checkLen(b, "nodes_featureids", len(feats), n, "nodes_treeids")
	checkLen(b, "nodes_modes", len(modes), n, "nodes_treeids")
	checkLen(b, "nodes_values", len(vals), n, "nodes_treeids")
	checkLen(b, "nodes_truenodeids", len(trues), n, "nodes_treeids")
	checkLen(b, "nodes_falsenodeids", len(falses), n, "nodes_treeids")
	if miss != nil {
		checkLen(b, "nodes_missing_value_tracks_true", len(miss), n, "nodes_treeids")
	}
	nw := len(wTree)
	checkLen(b, weightPrefix+"nodeids", len(wNode), nw, weightPrefix+"treeids")
	checkLen(b, weightPrefix+"ids", len(wID), nw, weightPrefix+"treeids")
	checkLen(b, weightPrefix+"weights", len(wVal), nw, weightPrefix+"treeids")
	if b.Err() != nil {
		return nil
	}

	type key struct{ tree, node int64 }
	index := make(map[key]int32, n)
	te := &treeEnsemble{nodes: make([]flatNode, n), nTargets: nTargets, allLEQ: true, allPos: true, oneClass: -1}
	treeRoot := map[int64]int32{}
	var treeOrder []int64
	for i := 0; i < n; i++ {
		k := key{treeIDs[i], nodeIDs[i]}
		if _, dup := index[k]; dup {
			b.Errorf("node %d of tree %d appears twice (nodes_nodeids[%d])", nodeIDs[i], treeIDs[i], i)
			return nil
		}
		index[k] = int32(i)
		if _, ok := treeRoot[treeIDs[i]]; !ok {
			treeRoot[treeIDs[i]] = -1
			treeOrder = append(treeOrder, treeIDs[i])
		}
		m, ok := nodeModeNames[modes[i]]
		if !ok {
			b.Errorf("nodes_modes[%d] is %q, want BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ or LEAF", i, modes[i])
			return nil
		}
		nd := &te.nodes[i]
		nd.mode = m
		nd.thr = vals[i]
		if m != modeLeaf {
			if feats[i] < 0 || feats[i] > math.MaxInt32 {
				b.Errorf("nodes_featureids[%d] is %d, want >= 0", i, feats[i])
				return nil
			}
			nd.feature = int32(feats[i])
			te.maxFeat = max(te.maxFeat, int(feats[i]))
			if miss != nil && miss[i] != 0 {
				nd.missTrue = true
				te.hasMiss = true
			}
			if m != modeLEQ || nd.missTrue {
				te.allLEQ = false
			}
		}
	}
	// Resolve children, find roots (the node with the smallest id of each tree; ids start at 0 by spec).
	for i := 0; i < n; i++ {
		nd := &te.nodes[i]
		if r := treeRoot[treeIDs[i]]; r < 0 || nodeIDs[i] < nodeIDs[r] {
			treeRoot[treeIDs[i]] = int32(i)
		}
		if nd.mode == modeLeaf {
			continue
		}
		t, okT := index[key{treeIDs[i], trues[i]}]
		f, okF := index[key{treeIDs[i], falses[i]}]
		if !okT || !okF {
			b.Errorf("node %d of tree %d points to missing child (true %d, false %d)", nodeIDs[i], treeIDs[i], trues[i], falses[i])
			return nil
		}
		nd.next = [2]int32{f, t}
	}
	for _, t := range treeOrder {
		te.roots = append(te.roots, treeRoot[t])
	}
	te.nTrees = len(te.roots)

	// Group the weights by leaf.
	perLeaf := make([][]int, n)
	used := map[int32]bool{}
	for j := 0; j < nw; j++ {
		i, ok := index[key{wTree[j], wNode[j]}]
		if !ok {
			b.Errorf("%snodeids[%d]: tree %d has no node %d", weightPrefix, j, wTree[j], wNode[j])
			return nil
		}
		if te.nodes[i].mode != modeLeaf {
			b.Errorf("%snodeids[%d]: node %d of tree %d is not a LEAF", weightPrefix, j, wNode[j], wTree[j])
			return nil
		}
		if wID[j] < 0 || wID[j] >= int64(nTargets) {
			b.Errorf("%sids[%d] is %d, want 0 to %d", weightPrefix, j, wID[j], nTargets-1)
			return nil
		}
		perLeaf[i] = append(perLeaf[i], j)
		used[int32(wID[j])] = true
		if wVal[j] < 0 {
			te.allPos = false
		}
	}
	if len(used) == 1 {
		for k := range used {
			te.oneClass = int(k)
		}
	}
	te.wTarget = make([]int32, 0, nw)
	te.wValue = make([]float64, 0, nw)
	for i := range te.nodes {
		if te.nodes[i].mode != modeLeaf {
			continue
		}
		start := int32(len(te.wTarget))
		for _, j := range perLeaf[i] {
			te.wTarget = append(te.wTarget, int32(wID[j]))
			te.wValue = append(te.wValue, wVal[j])
		}
		te.nodes[i].next = [2]int32{start, int32(len(te.wTarget))}
	}
	// Fast path: all weights for one target, at most one per leaf.
	te.single = te.oneClass >= 0
	for i := range te.nodes {
		nd := &te.nodes[i]
		if nd.mode != modeLeaf {
			continue
		}
		switch nd.next[1] - nd.next[0] {
		case 0:
			nd.thr = 0
		case 1:
			nd.thr = te.wValue[nd.next[0]]
		default:
			te.single = false
		}
	}

	// Every tree must be a tree: no node reached twice from its root (this
	// also rules out cycles, which would make evaluation loop forever).
	seen := make([]bool, n)
	stack := []int32{}
	for _, r := range te.roots {
		stack = append(stack[:0], r)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[i] {
				b.Errorf("node %d of tree %d is reached twice: the tree has a cycle or shared node", nodeIDs[i], treeIDs[i])
				return nil
			}
			seen[i] = true
			if te.nodes[i].mode != modeLeaf {
				stack = append(stack, te.nodes[i].next[0], te.nodes[i].next[1])
			}
		}
	}
	return te
}

// leaf returns the index of the leaf that row x reaches in the tree at root.
func (te *treeEnsemble) leaf(root int32, x []float64) int32 {
	nodes := te.nodes
	i := root
	if te.allLEQ {
		for {
			nd := &nodes[i]
			if nd.mode == modeLeaf {
				return i
			}
			if x[nd.feature] <= nd.thr {
				i = nd.next[1]
			} else {
				i = nd.next[0]
			}
		}
	}
	for {
		nd := &nodes[i]
		var c bool
		v := x[nd.feature]
		switch nd.mode {
		case modeLeaf:
			return i
		case modeLEQ:
			c = v <= nd.thr
		case modeLT:
			c = v < nd.thr
		case modeGTE:
			c = v >= nd.thr
		case modeGT:
			c = v > nd.thr
		case modeEQ:
			c = v == nd.thr
		case modeNEQ:
			c = v != nd.thr
		}
		if nd.missTrue && v != v {
			c = true
		}
		if c {
			i = nd.next[1]
		} else {
			i = nd.next[0]
		}
	}
}

// scoreRow aggregates the leaf weights row x reaches into score and has
// (both of length nTargets, overwritten).
func (te *treeEnsemble) scoreRow(x []float64, score []float64, has []bool) {
	clear(score)
	clear(has)
	if te.single && (te.agg == aggSum || te.agg == aggAverage) {
		// Every leaf has at most one weight, all for target oneClass: its
		// sum is kept in the leaf's thr.
		s, hit := 0.0, false
		for _, r := range te.roots {
			nd := &te.nodes[te.leaf(r, x)]
			s += nd.thr
			hit = hit || nd.next[1] > nd.next[0]
		}
		if te.agg == aggAverage {
			s /= float64(te.nTrees)
		}
		score[te.oneClass] = s
		has[te.oneClass] = hit
		return
	}
	for _, r := range te.roots {
		lf := &te.nodes[te.leaf(r, x)]
		for w := lf.next[0]; w < lf.next[1]; w++ {
			k, v := te.wTarget[w], te.wValue[w]
			switch te.agg {
			case aggSum, aggAverage:
				score[k] += v
			case aggMin:
				if !has[k] || v < score[k] {
					score[k] = v
				}
			case aggMax:
				if !has[k] || v > score[k] {
					score[k] = v
				}
			}
			has[k] = true
		}
	}
	if te.agg == aggAverage {
		for k := range score {
			score[k] /= float64(te.nTrees)
		}
	}
}

func (te *treeEnsemble) checkInput(f int) error {
	if te.maxFeat >= f {
		return errclass.Invalid("inputs[0]", "input X has %d features per row, the trees use feature %d", f, te.maxFeat)
	}
	return nil
}

func buildTreeEnsembleRegressor(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	nTargets := int(b.AttrInt("n_targets", 1))
	if nTargets < 1 || nTargets > maxMLWidth {
		b.Errorf("attribute n_targets is %d, want 1 to %d", nTargets, maxMLWidth)
		return nil, b.Err()
	}
	aggName := b.AttrString("aggregate_function", "SUM")
	agg, ok := map[string]aggregate{"SUM": aggSum, "AVERAGE": aggAverage, "MIN": aggMin, "MAX": aggMax}[aggName]
	if !ok {
		b.Errorf("attribute aggregate_function is %q, want SUM, AVERAGE, MIN or MAX", aggName)
	}
	post := attrPostTransform(b)
	base := attrFloatsOrTensor(b, "base_values")
	te := compileTrees(b, "target_", nTargets)
	if b.Err() != nil {
		return nil, b.Err()
	}
	if len(base) != 0 && len(base) != nTargets {
		b.Errorf("attribute base_values has %d values, want %d (n_targets)", len(base), nTargets)
		return nil, b.Err()
	}
	te.agg, te.post, te.base = agg, post, base
	return te.runRegressor, nil
}

func (te *treeEnsemble) runRegressor(rc *RunContext, in, out []*Tensor) error {
	x, n, f, err := mlRows(in[0], "X", nil)
	if err != nil {
		return err
	}
	if err := te.checkInput(f); err != nil {
		return err
	}
	y := rc.Alloc(Float, []int{n, te.nTargets})
	yd := y.Float32s()
	score := make([]float64, te.nTargets)
	has := make([]bool, te.nTargets)
	for r := 0; r < n; r++ {
		te.scoreRow(x[r*f:(r+1)*f], score, has)
		for k := range score {
			if len(te.base) > 0 {
				score[k] += te.base[k]
			}
		}
		te.post.apply(score)
		storeFloats(yd[r*te.nTargets:(r+1)*te.nTargets], score)
	}
	out[0] = y
	return nil
}

// treeClassifier is a compiled TreeEnsembleClassifier.
type treeClassifier struct {
	*treeEnsemble
	labels labelSet
	binary bool // two labels, one score column
}

func buildTreeEnsembleClassifier(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 2)
	labels := attrLabels(b, "classlabels_int64s", "classlabels_strings")
	post := attrPostTransform(b)
	base := attrFloatsOrTensor(b, "base_values")
	if b.Err() != nil {
		return nil, b.Err()
	}
	nc := labels.len()
	if nc == 0 {
		b.Errorf("attributes classlabels_int64s and classlabels_strings are both empty")
		return nil, b.Err()
	}
	te := compileTrees(b, "class_", nc)
	if b.Err() != nil {
		return nil, b.Err()
	}
	if len(base) != 0 && len(base) != nc && !(nc == 2 && len(base) == 1) {
		b.Errorf("attribute base_values has %d values, want %d (one per class)", len(base), nc)
		return nil, b.Err()
	}
	te.post, te.base = post, base
	tc := &treeClassifier{treeEnsemble: te, labels: labels, binary: nc == 2 && te.oneClass >= 0}
	return tc.run, nil
}

// run scores rows. Several classes: the label is the class with the largest
// score (before post_transform). Binary (two labels, weights for one class
// index only): the single score s is the positive class's; with weights all
// >= 0 it is a probability, the label is the second label when s > 0.5 and
// the scores are [1-s, s]; otherwise the label is the second when s > 0 and
// the scores are [-s, s] (post_transform NONE) or transformed from that.
func (tc *treeClassifier) run(rc *RunContext, in, out []*Tensor) error {
	x, n, f, err := mlRows(in[0], "X", nil)
	if err != nil {
		return err
	}
	if err := tc.checkInput(f); err != nil {
		return err
	}
	nc := tc.labels.len()
	lab := tc.labels.alloc(rc, n)
	probs := rc.Alloc(Float, []int{n, nc})
	pd := probs.Float32s()
	score := make([]float64, nc)
	has := make([]bool, nc)
	for r := 0; r < n; r++ {
		tc.scoreRow(x[r*f:(r+1)*f], score, has)
		row := score
		if tc.binary {
			s := score[tc.oneClass]
			switch len(tc.base) {
			case 1:
				s += tc.base[0]
			case 2:
				s += tc.base[tc.oneClass]
			}
			if tc.allPos {
				tc.labels.set(lab, r, b2i(s > 0.5))
				score[0], score[1] = 1-s, s
			} else {
				tc.labels.set(lab, r, b2i(s > 0))
				score[0], score[1] = -s, s
				tc.post.apply(score)
			}
		} else {
			best := -1
			for k := range row {
				if len(tc.base) == nc {
					row[k] += tc.base[k]
					has[k] = true
				}
				if has[k] && (best < 0 || row[k] > row[best]) {
					best = k
				}
			}
			if best < 0 {
				best = 0
			}
			tc.labels.set(lab, r, best)
			tc.post.apply(row)
		}
		storeFloats(pd[r*nc:(r+1)*nc], row)
	}
	out[0] = lab
	if len(out) > 1 {
		out[1] = probs
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func init() {
	Register(
		OpDef{Domain: mlDomain, Name: "TreeEnsembleClassifier", Since: 1, Build: buildTreeEnsembleClassifier},
		OpDef{Domain: mlDomain, Name: "TreeEnsembleRegressor", Since: 1, Build: buildTreeEnsembleRegressor},
	)
}
