function sortPrompts(key, descending) {
  const table = document.getElementById('clips');
  const groups = Array.from(table.tBodies);
  groups.sort((a, b) => {
    const x = a.dataset[key], y = b.dataset[key];
    const nx = parseFloat(x), ny = parseFloat(y);
    const cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
    return descending ? -cmp : cmp;
  });
  groups.forEach(g => table.appendChild(g));
}
