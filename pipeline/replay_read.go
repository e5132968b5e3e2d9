package pipeline

import (
	"bufio"
	"io"
)

// Reading the log: splitting it into lines without loading it, and the lines
// that are not whole — too long, cut by a crash, or run into the next one.

// maxLine is the longest line replay reads whole; a longer one is skipped
// without being held in memory. Journal lines are short (messages are cut to
// 200 bytes), but a received line carries the client's model name as sent.
const maxLine = 16 << 20

// read feeds every line of r to the replayer.
func (rp *replayer) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte // a line longer than the reader's buffer, being gathered
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		rp.rep.Bytes += int64(len(chunk))
		switch {
		case err == bufio.ErrBufferFull:
			if !tooLong {
				if len(long)+len(chunk) > maxLine {
					tooLong, long = true, long[:0]
				} else {
					long = append(long, chunk...)
				}
			}
			continue
		case err != nil && err != io.EOF:
			return err
		}
		line := chunk
		if long != nil || tooLong {
			long = append(long, chunk...)
			line = long
		}
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			switch {
			case tooLong:
				rp.rep.Lines++
				rp.lineNo = rp.rep.Lines
				rp.ignore(line)
			case complete:
				rp.line(line)
			default:
				rp.lastLine(line)
			}
		}
		long, tooLong = nil, false
		if err == io.EOF {
			return nil
		}
	}
}

// line handles one complete line.
func (rp *replayer) line(text []byte) {
	rp.rep.Lines++
	rp.lineNo = rp.rep.Lines
	r := &rp.rec
	if parseLine(text, r) && !r.dupAction {
		if len(r.action) == 0 {
			rp.ignore(text)
			return
		}
		rp.apply(text)
		return
	}
	// A crash cut a line short and the restarted process appended its first
	// line to it: replay that one, drop the cut part.
	if i := spliceStart(text); i > 0 && parseLine(text[i:], r) && !r.dupAction && len(r.action) > 0 {
		rp.text = text
		rp.warn(WarningSpliced, "", "", "a line cut short (a crash?) runs into the next journal line: the cut part is dropped, the rest replayed")
		rp.apply(text[i:])
		return
	}
	rp.ignore(text)
}

// lastLine handles a last line that has no newline: a crash cut it, or it
// is simply unterminated. Only a line that still parses whole, timestamp
// (the journal's last field) included, is replayed.
func (rp *replayer) lastLine(text []byte) {
	rp.rep.Lines++
	rp.lineNo = rp.rep.Lines
	rp.text = text
	r := &rp.rec
	if parseLine(text, r) && !r.dupAction && len(r.action) > 0 {
		if _, ok := parseTimestamp(r.ts); ok {
			rp.warn(WarningTruncated, "", "", "the last line has no newline; it parses whole and is replayed")
			rp.apply(text)
			return
		}
	}
	rp.warn(WarningTruncated, "", "", "the last line is cut short (a crash?) and is not replayed")
	rp.rep.Ignored++
}

// ignore counts a line that is not part of the journal.
func (rp *replayer) ignore(text []byte) {
	rp.rep.Ignored++
	if len(rp.rep.IgnoredSamples) < 5 {
		rp.rep.IgnoredSamples = append(rp.rep.IgnoredSamples, LineSample{Line: rp.lineNo, Text: cut(text)})
	}
}
