// AudioWorklet: microphone -> mono -> 16 kHz Int16 frames of 20 ms (640 bytes), posted to the page.
//
// The AudioContext runs at the device rate (often 44.1 or 48 kHz) and the microphone may be stereo, so
// each 128-sample block is downmixed, low-pass filtered below the new Nyquist frequency and resampled by a
// fractional ratio (linear interpolation with a carried phase, so there is no drift or click between blocks).

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

class Biquad {
  // RBJ low-pass, direct form I.
  constructor(rate, cutoff) {
    const w0 = (2 * Math.PI * cutoff) / rate;
    const alpha = Math.sin(w0) / (2 * Math.SQRT1_2);
    const cos = Math.cos(w0);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }

  process(x) {
    const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
    this.x2 = this.x1;
    this.x1 = x;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample (fractional)
    // Two cascaded sections: about -24 dB/octave above 7 kHz, enough to keep aliasing out of speech.
    this.filters = sampleRate > TARGET_RATE ? [new Biquad(sampleRate, 7000), new Biquad(sampleRate, 7000)] : [];
    this.pos = 0; // position of the next output sample, in input samples, relative to the current block
    this.prev = 0; // last input sample of the previous block (index -1)
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.fill = 0;
    this.sumSquares = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0 || channels[0].length === 0) return true;
    const n = channels[0].length;
    const mono = new Float32Array(n);
    for (const ch of channels) for (let i = 0; i < n; i++) mono[i] += ch[i];
    const scale = 1 / channels.length;
    for (let i = 0; i < n; i++) {
      let x = mono[i] * scale;
      for (const f of this.filters) x = f.process(x);
      mono[i] = x;
    }
    // Output sample k sits at input position pos + k*ratio; index -1 is the previous block's last sample.
    while (this.pos < n - 1 + 1e-9) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i < 0 ? this.prev : mono[i];
      const b = mono[Math.min(i + 1, n - 1)];
      this.push(a + (b - a) * frac);
      this.pos += this.ratio;
    }
    this.pos -= n;
    this.prev = mono[n - 1];
    return true;
  }

  push(x) {
    const s = Math.max(-1, Math.min(1, x));
    this.frame[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.sumSquares += s * s;
    if (this.fill === FRAME_SAMPLES) {
      const rms = Math.sqrt(this.sumSquares / FRAME_SAMPLES);
      this.port.postMessage({ pcm: this.frame.buffer, rms }, [this.frame.buffer]);
      this.frame = new Int16Array(FRAME_SAMPLES);
      this.fill = 0;
      this.sumSquares = 0;
    }
  }
}

registerProcessor("capture-processor", CaptureProcessor);
