// The timeline: every CloudEvent the relay delivered, one group per call (its mediaSessionId),
// in the words a person uses rather than the API's statuses.

/** A status as a person says it. */
export const STATUS_TEXT = {
  Initial: 'Created', InProgress: 'In progress', Ringing: 'Ringing', Connected: 'Connected',
  Hold: 'On hold', Resume: 'Resumed', Terminated: 'Ended', SessionCancelled: 'Cancelled',
  Declined: 'Declined', Failed: 'Failed', NoAnswer: 'No answer', NotReachable: 'Not reachable', Busy: 'Busy',
};
/** Resolves a call: a timeline entry of one of them is set apart (data-final). */
const FINAL = new Set(['Terminated', 'SessionCancelled', 'Declined', 'Failed', 'NoAnswer', 'NotReachable', 'Busy']);

const groups = new Map(); // mediaSessionId (or 'other') -> { summary, list, startedAt, last }

/** A tel: URI as people write the number; other addresses as they are. */
export const displayAddress = (address) => String(address || 'unknown').replace(/^tel:/, '');

const kindOf = (type) => String(type || '').replace('org.camaraproject.webrtc-events.v0.', '');

function timeOf(date) {
  return `${date.toLocaleTimeString(undefined, { hour12: false })}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

function describe(entry) {
  const kind = kindOf(entry.type);
  let text;
  if (kind === 'session-invitation') text = `Incoming call from ${displayAddress(entry.data.originatorAddress)}`;
  else if (kind === 'session-status') text = STATUS_TEXT[entry.status] || entry.status || 'Status unknown';
  else if (kind === 'registration-ends') text = 'Registration ended';
  else if (kind === 'subscription-ended') text = 'Subscription ended';
  else text = kind;
  if (!entry.reason) return text;
  // "Ringing (180)" says it all; "Ringing: Ringing (180)" would say it twice.
  return entry.reason.toLowerCase().startsWith(text.toLowerCase()) ? entry.reason : `${text}: ${entry.reason}`;
}

function groupOf(entry, ownNumber) {
  const key = entry.mediaSessionId || 'other';
  let group = groups.get(key);
  if (group) return group;
  const item = document.createElement('li');
  const title = document.createElement('h3');
  title.className = 'call-title';
  if (entry.mediaSessionId) {
    // A call placed elsewhere starts with its invitation; one placed here names this number as caller.
    const { data } = entry;
    const outgoing = kindOf(entry.type) !== 'session-invitation' && Boolean(ownNumber)
      && displayAddress(data.originatorAddress) === displayAddress(ownNumber);
    item.dataset.mediaSessionId = entry.mediaSessionId;
    item.dataset.direction = outgoing ? 'outgoing' : 'incoming';
    title.textContent = outgoing
      ? `Outgoing call to ${displayAddress(data.receiverAddress)}`
      : `Incoming call from ${displayAddress(data.originatorAddress)}`;
  } else {
    item.dataset.direction = 'none';
    title.textContent = 'Registration and subscription';
  }
  const summary = document.createElement('p');
  summary.className = 'call-summary';
  const list = document.createElement('ol');
  list.className = 'call-events';
  item.append(title, summary, list);
  document.getElementById('timeline').appendChild(item);
  group = { summary, list, startedAt: new Date(entry.receivedAt), last: null };
  groups.set(key, group);
  return group;
}

/** Shows one event (the page's entry: receivedAt, type, status, reason, sequenceNumber, ...). */
export function addTimelineEntry(entry, ownNumber) {
  const group = groupOf(entry, ownNumber);
  const row = document.createElement('li');
  row.dataset.type = kindOf(entry.type);
  if (entry.status) row.dataset.status = entry.status;
  if (FINAL.has(entry.status)) row.dataset.final = 'true';
  const time = document.createElement('time');
  time.dateTime = entry.receivedAt;
  time.textContent = timeOf(new Date(entry.receivedAt));
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = describe(entry);
  row.append(time, what);
  if (entry.sequenceNumber !== null) {
    const seq = document.createElement('span');
    seq.className = 'seq';
    seq.textContent = `#${entry.sequenceNumber}`;
    seq.title = 'sequence number';
    row.appendChild(seq);
  }
  group.list.appendChild(row);
  const kind = kindOf(entry.type);
  if (kind === 'session-invitation') group.last = 'Ringing';
  else if (kind === 'session-status') group.last = STATUS_TEXT[entry.status] || entry.status;
}

/** A group's one-line summary: start time, latest state, and the duration once known. */
export function summarizeTimelineGroup(mediaSessionId, duration) {
  const group = groups.get(mediaSessionId || 'other');
  if (!group) return;
  const parts = [timeOf(group.startedAt).slice(0, 8)];
  if (group.last) parts.push(group.last);
  if (duration) parts.push(duration);
  group.summary.textContent = parts.join(' · ');
}
