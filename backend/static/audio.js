// Microphone capture (AudioWorklet -> 20 ms PCM16 frames at 16 kHz) and gapless reply playback.

export class MicDeniedError extends Error {}

export class Capture {
  /** @param {AudioContext} ctx  @param {(pcm: ArrayBuffer, rms: number) => void} onFrame */
  constructor(ctx, onFrame) {
    this.ctx = ctx;
    this.onFrame = onFrame;
    this.node = null;
    this.stream = null;
    this.source = null;
    this.sink = null;
  }

  /** Load the worklet module. Call before open(): the microphone should start only once all is ready. */
  async load() {
    await this.ctx.audioWorklet.addModule("/static/capture-worklet.js");
    this.node = new AudioWorkletNode(this.ctx, "capture-processor", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCountMode: "explicit",
      channelCount: 2,
      channelInterpretation: "speakers",
    });
    this.node.port.onmessage = (e) => this.onFrame(e.data.pcm, e.data.rms);
    // A silent path to the destination keeps the node in the rendering graph.
    this.sink = new GainNode(this.ctx, { gain: 0 });
    this.node.connect(this.sink).connect(this.ctx.destination);
  }

  /** Ask for the microphone (echo cancellation, noise suppression, auto gain on) and start capturing. */
  async open() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new MicDeniedError("This browser cannot use a microphone here (it needs https or localhost).");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: { ideal: 1 } },
        video: false,
      });
    } catch (err) {
      const name = err && err.name;
      if (name === "NotAllowedError" || name === "SecurityError") {
        throw new MicDeniedError("Microphone access was denied. Allow it in the browser's site settings, then press Start again.");
      }
      if (name === "NotFoundError" || name === "OverconstrainedError") {
        throw new MicDeniedError("No microphone was found. Connect one, then press Start again.");
      }
      throw new MicDeniedError(`The microphone could not be opened (${name || "unknown error"}).`);
    }
    this.source = this.ctx.createMediaStreamSource(this.stream);
    this.source.connect(this.node);
  }

  close() {
    if (this.source) this.source.disconnect();
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.source = null;
    this.stream = null;
  }
}

export class Player {
  /**
   * Schedules AudioBufferSourceNodes back to back at the announced rate, so chunks play without gaps.
   * @param {AudioContext} ctx
   * @param {{onStart: () => void, onEnded: () => void, onChunkEnded: () => void}} hooks
   */
  constructor(ctx, hooks) {
    this.ctx = ctx;
    this.hooks = hooks;
    this.rate = 22050;
    this.nextTime = 0;
    this.sources = new Set();
    this.turnDone = false; // audio.end seen for the current reply
    this.gain = new GainNode(ctx, { gain: 1 });
    this.gain.connect(ctx.destination);
  }

  begin(rate) {
    this.rate = rate;
    this.turnDone = false;
  }

  /** @param {ArrayBuffer} data PCM16 LE mono at this.rate */
  enqueue(data) {
    const pcm = new Int16Array(data, 0, data.byteLength >> 1);
    if (pcm.length === 0) return;
    const buffer = this.ctx.createBuffer(1, pcm.length, this.rate);
    const ch = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = new AudioBufferSourceNode(this.ctx, { buffer });
    src.connect(this.gain);
    const now = this.ctx.currentTime;
    if (this.nextTime < now + 0.02) this.nextTime = now + 0.05; // (re)start with a small lead
    const wasIdle = this.sources.size === 0;
    src.start(this.nextTime);
    this.nextTime += buffer.duration;
    this.sources.add(src);
    src.onended = () => {
      this.sources.delete(src);
      this.hooks.onChunkEnded();
      this.maybeEnded();
    };
    if (wasIdle) this.hooks.onStart();
  }

  /** The server finished sending this reply's audio; playback ends when the queued chunks have played. */
  end() {
    this.turnDone = true;
    this.maybeEnded();
  }

  maybeEnded() {
    if (this.turnDone && this.sources.size === 0) {
      this.turnDone = false;
      this.nextTime = 0;
      this.hooks.onEnded();
    }
  }

  get playing() {
    return this.sources.size > 0;
  }

  /** Stop now and drop everything queued (barge-in). Returns true if anything was playing. */
  stop() {
    const had = this.sources.size > 0;
    for (const src of this.sources) {
      src.onended = null;
      try {
        src.stop();
      } catch {
        /* not started yet */
      }
      src.disconnect();
    }
    this.sources.clear();
    this.nextTime = 0;
    this.turnDone = false;
    return had;
  }
}
