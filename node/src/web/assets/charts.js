// Two small charts drawn on a <canvas>: no library, no remote source.

function colours(canvas) {
  const style = getComputedStyle(canvas);
  return { fg: style.color, line: getComputedStyle(document.documentElement).getPropertyValue('--accent') || style.color };
}

function frame(canvas, max, caption) {
  const ctx = canvas.getContext('2d');
  const { fg } = colours(canvas);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = fg;
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText(`max ${max}`, 4, 12);
  ctx.fillText(caption, 4, canvas.height - 4);
  return ctx;
}

// Bars, one a value, oldest left; `values` are counts.
export function bars(canvas, values, caption) {
  const max = Math.max(1, ...values);
  const ctx = frame(canvas, max, caption);
  const { line } = colours(canvas);
  const top = 16, bottom = canvas.height - 16, width = canvas.width / values.length;
  ctx.fillStyle = line.trim();
  values.forEach((v, i) => {
    const h = (bottom - top) * v / max;
    ctx.fillRect(i * width + 1, bottom - h, Math.max(1, width - 2), h);
  });
}

// A step line through `points` ([seconds, value], oldest first) over the
// `span` seconds before `now`.
export function steps(canvas, points, now, span, caption) {
  const max = Math.max(1, ...points.map(p => p[1]));
  const ctx = frame(canvas, max, caption);
  const { line } = colours(canvas);
  const top = 16, bottom = canvas.height - 16;
  const x = t => canvas.width * (1 - (now - t) / span);
  const y = v => bottom - (bottom - top) * v / max;
  ctx.strokeStyle = line.trim();
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach(([t, v], i) => {
    if (i === 0) ctx.moveTo(x(t), y(v));
    else { ctx.lineTo(x(t), y(points[i - 1][1])); ctx.lineTo(x(t), y(v)); }
  });
  if (points.length) ctx.lineTo(canvas.width, y(points[points.length - 1][1]));
  ctx.stroke();
}
