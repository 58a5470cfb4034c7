// Package mlfleet is the root of the mlfleet module: an edge/IoT model
// deployment runtime. The code lives in cloud/ (control plane), edge/ (device
// daemon), shared/ (what both speak), images/ (what goes into scoring images)
// and cmd/ (the binaries). This package holds only the layout test that keeps
// those parts apart.
package mlfleet
