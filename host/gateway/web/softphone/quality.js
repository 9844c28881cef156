// Call quality from RTCPeerConnection.getStats(): the audio counters tests check, and the live
// line a person reads (bitrate each way, round-trip time, packet loss).

/**
 * One reading. `previous` (the last reading of the same call, or null) turns counters into rates
 * over the interval, which is what "live" means to the person watching.
 */
export async function readQuality(pc, previous) {
  const report = await pc.getStats();
  const totals = { packetsSent: 0, packetsReceived: 0, bytesSent: 0, bytesReceived: 0, packetsLost: 0 };
  let jitter = null;
  let rtcpRtt = null;
  let pairRtt = null;
  let selectedPair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) selectedPair = r.selectedCandidatePairId;
  });
  report.forEach((r) => {
    const audio = r.kind === 'audio' || r.mediaType === 'audio';
    if (r.type === 'outbound-rtp' && audio) {
      totals.packetsSent += r.packetsSent || 0;
      totals.bytesSent += r.bytesSent || 0;
    } else if (r.type === 'inbound-rtp' && audio) {
      totals.packetsReceived += r.packetsReceived || 0;
      totals.bytesReceived += r.bytesReceived || 0;
      totals.packetsLost += Math.max(0, r.packetsLost || 0);
      if (typeof r.jitter === 'number') jitter = r.jitter;
    } else if (r.type === 'remote-inbound-rtp' && audio && typeof r.roundTripTime === 'number') {
      rtcpRtt = r.roundTripTime;
    } else if (r.type === 'candidate-pair' && typeof r.currentRoundTripTime === 'number'
      && (r.id === selectedPair || (!selectedPair && r.nominated && r.state === 'succeeded'))) {
      pairRtt = r.currentRoundTripTime;
    }
  });
  const at = performance.now();
  const seconds = previous ? (at - previous.at) / 1000 : 0;
  const rate = (key) => (seconds > 0 ? Math.max(0, ((totals[key] - previous.totals[key]) * 8) / seconds / 1000) : null);
  let lossPercent = null;
  if (previous) {
    const lost = totals.packetsLost - previous.totals.packetsLost;
    const received = totals.packetsReceived - previous.totals.packetsReceived;
    lossPercent = lost + received > 0 ? (100 * Math.max(0, lost)) / (lost + received) : 0;
  }
  // RTCP's round trip covers the media path end to end; ICE's is only to the first hop (the
  // gateway), used when the other side sends no receiver reports.
  const rtt = rtcpRtt ?? pairRtt;
  return {
    at,
    totals,
    quality: {
      sendKbps: rate('bytesSent'),
      receiveKbps: rate('bytesReceived'),
      rttMs: rtt === null ? null : Math.round(rtt * 1000),
      lossPercent,
      jitterMs: jitter === null ? null : Math.round(jitter * 1000),
    },
  };
}

/** The line shown during a call. */
export function describeQuality(q) {
  if (!q || q.sendKbps === null) return 'Measuring…';
  const kbps = (x) => `${Math.round(x)} kbit/s`;
  const parts = [`sending ${kbps(q.sendKbps)}`, `receiving ${kbps(q.receiveKbps)}`];
  parts.push(q.rttMs === null ? 'round trip unknown' : `round trip ${q.rttMs} ms`);
  parts.push(`loss ${q.lossPercent.toFixed(1)} %`);
  if (q.jitterMs !== null) parts.push(`jitter ${q.jitterMs} ms`);
  const text = parts.join(', ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}
