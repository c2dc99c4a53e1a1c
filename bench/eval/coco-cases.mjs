// Seeded random COCO cases (ground truth + detections) for the reference comparison and the timing.
// Cases exercise crowd GT, `area` fields that differ from w*h, score ties, images without GT,
// categories without GT, and image/category pairs with more than 100 detections.

/** mulberry32: small seeded PRNG returning floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * options: images, categories, gtPerImage (mean), detsPerGt, falseDets (per image), crowdRate,
 * tieRate (fraction of scores rounded to 1 decimal), burst (number of image/category pairs given 150 detections).
 */
export function makeCocoCase(seed, o) {
  const r = rng(seed);
  const images = [];
  const categories = [];
  const annotations = [];
  const dets = [];
  for (let c = 0; c < o.categories; c++) categories.push({ id: c * 3 + 1, name: `c${c}` });
  // Categories whose id ends in the last 10%: no GT at all (dets only).
  const gtCats = categories.slice(0, Math.max(1, Math.floor(categories.length * 0.9)));
  let annId = 1;
  const score = () => (r() < o.tieRate ? Math.round(r() * 10) / 10 : r());
  for (let i = 0; i < o.images; i++) {
    const imgId = 1000 + ((i * 7919) % (o.images * 13)); // unsorted, sparse ids
    images.push({ id: imgId, width: 640, height: 480 });
    const noGt = r() < 0.1;
    const nGt = noGt ? 0 : Math.floor(r() * 2 * o.gtPerImage);
    for (let g = 0; g < nGt; g++) {
      const cat = gtCats[Math.floor(r() * gtCats.length)];
      const scale = Math.exp(r() * 5); // 1 .. 148 px
      const w = scale * (0.5 + r());
      const h = scale * (0.5 + r());
      const x = r() * (640 - w);
      const y = r() * (480 - h);
      const crowd = r() < o.crowdRate ? 1 : 0;
      const area = w * h * (0.6 + 0.4 * r());
      annotations.push({ id: annId++, image_id: imgId, category_id: cat.id, bbox: [x, y, w, h], area, iscrowd: crowd });
      const nd = Math.floor(r() * 2 * o.detsPerGt);
      for (let d = 0; d < nd; d++) {
        const j = () => (r() - 0.5) * 0.4;
        dets.push({
          image_id: imgId,
          category_id: r() < 0.9 ? cat.id : categories[Math.floor(r() * categories.length)].id,
          bbox: [x + j() * w, y + j() * h, w * (1 + j()), h * (1 + j())],
          score: score(),
        });
      }
    }
    const nf = Math.floor(r() * 2 * o.falseDets);
    for (let d = 0; d < nf; d++) {
      const s = Math.exp(r() * 5);
      dets.push({
        image_id: imgId,
        category_id: categories[Math.floor(r() * categories.length)].id,
        bbox: [r() * 600, r() * 440, s, s * (0.5 + r())],
        score: score(),
      });
    }
  }
  for (let b = 0; b < (o.burst ?? 0); b++) {
    const ann = annotations[Math.floor(r() * annotations.length)];
    if (!ann) break;
    for (let d = 0; d < 150; d++) {
      const [x, y, w, h] = ann.bbox;
      dets.push({
        image_id: ann.image_id,
        category_id: ann.category_id,
        bbox: [x + (r() - 0.5) * w, y + (r() - 0.5) * h, w, h],
        score: score(),
      });
    }
  }
  // Shuffle detections so file order differs from generation order.
  for (let i = dets.length - 1; i > 0; i--) {
    const k = Math.floor(r() * (i + 1));
    [dets[i], dets[k]] = [dets[k], dets[i]];
  }
  return { gt: { images, categories, annotations }, dets };
}
