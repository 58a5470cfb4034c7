package modelfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// decoder reads protobuf wire format from a stream, counting what it used so
// nested messages can be bounded.
type decoder struct {
	r    *bufio.Reader
	left int64 // bytes left in the current message; -1 = until EOF
}

var errTruncated = errors.New("truncated protobuf")

func (d *decoder) take(n int64) error {
	if d.left < 0 {
		return nil
	}
	if n > d.left {
		return errTruncated
	}
	d.left -= n
	return nil
}

func (d *decoder) varint() (uint64, error) {
	var x uint64
	for i := 0; i < 10; i++ {
		b, err := d.r.ReadByte()
		if err != nil {
			return 0, errTruncated
		}
		if err := d.take(1); err != nil {
			return 0, err
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

func (d *decoder) length() (int64, error) {
	n, err := d.varint()
	if err != nil {
		return 0, err
	}
	if n > 1<<40 || (d.left >= 0 && int64(n) > d.left) {
		return 0, errTruncated
	}
	if err := d.take(int64(n)); err != nil {
		return 0, err
	}
	return int64(n), nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.length()
	if err != nil {
		return nil, err
	}
	if n > maxField {
		return nil, fmt.Errorf("field of %d bytes is too large", n)
	}
	if n <= 64<<10 {
		b := make([]byte, n)
		if _, err := io.ReadFull(d.r, b); err != nil {
			return nil, errTruncated
		}
		return b, nil
	}
	// A large declared length is not trusted: the buffer grows with the
	// bytes that actually arrive, so a short stream cannot make us allocate
	// what it only claims to hold.
	var buf bytes.Buffer
	if got, err := io.CopyN(&buf, d.r, n); got != n || err != nil {
		return nil, errTruncated
	}
	return buf.Bytes(), nil
}

func (d *decoder) skip(wt int) error {
	var n int64
	switch wt {
	case 0:
		_, err := d.varint()
		return err
	case 1:
		n = 8
		if err := d.take(n); err != nil {
			return err
		}
	case 5:
		n = 4
		if err := d.take(n); err != nil {
			return err
		}
	case 2:
		var err error
		if n, err = d.length(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported wire type %d", wt)
	}
	// Discard in chunks: n may exceed int on 32-bit platforms.
	for n > 0 {
		chunk := min(n, 1<<30)
		got, err := d.r.Discard(int(chunk))
		if int64(got) != chunk || err != nil {
			return errTruncated
		}
		n -= chunk
	}
	return nil
}

// walk calls fn for each field of a message of n bytes (n < 0: until EOF).
// fn must consume the field's value (with d.varint, d.bytes, d.length + a
// nested walk, or d.skip).
func walk(r *bufio.Reader, n int64, fn func(num, wt int, d *decoder) error) error {
	d := &decoder{r: r, left: n}
	for {
		if d.left == 0 {
			return nil
		}
		if d.left < 0 {
			if _, err := r.Peek(1); err == io.EOF {
				return nil
			}
		}
		tag, err := d.varint()
		if err != nil {
			return err
		}
		num, wt := int(tag>>3), int(tag&7)
		if num == 0 {
			return errors.New("field number 0")
		}
		if err := fn(num, wt, d); err != nil {
			return err
		}
	}
}

func walkBytes(b []byte, fn func(num, wt int, d *decoder) error) error {
	return walk(bufio.NewReader(bytes.NewReader(b)), int64(len(b)), fn)
}
