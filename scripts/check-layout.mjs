// Checks that the README's "Layout" section lists every file of the repository's code folders,
// and names nothing that does not exist. Node only, no dependencies.
//
// Convention (README.md): the first fenced block after the "## Layout" heading holds one file
// per line, `path   description`; the path is the first whitespace-separated word of the line.
// Blank lines are ignored. Every file that git tracks under the folders in CHECKED_ROOTS must be
// listed there, and every listed path must exist on disk (so a renamed file fails until the
// README follows).
//
//   node scripts/check-layout.mjs        exit 0 when they agree, 1 with the differences listed

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** Folders whose every tracked file the layout must list (what a reader needs a map of). */
const CHECKED_ROOTS = ["src/", "tests/", "bench/", "scripts/", "examples/", "api/", "docs/", "web/"];
const README = "README.md";
const HEADING = /^##\s+Layout\s*$/;

function layoutPaths(markdown) {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => HEADING.test(l));
  if (start < 0) throw new Error(`${README} has no "## Layout" section`);
  let i = start + 1;
  while (i < lines.length && !lines[i].startsWith("```")) {
    if (lines[i].startsWith("## ")) throw new Error(`the "## Layout" section of ${README} has no fenced block`);
    i++;
  }
  if (i >= lines.length) throw new Error(`the "## Layout" section of ${README} has no fenced block`);
  const paths = [];
  for (i++; i < lines.length && !lines[i].startsWith("```"); i++) {
    const word = lines[i].trim().split(/\s+/)[0];
    if (word) paths.push({ path: word, line: i + 1 });
  }
  if (i >= lines.length) throw new Error(`the layout block of ${README} is not closed`);
  return paths;
}

function trackedFiles() {
  const out = execFileSync("git", ["ls-files", "-z", "--", ...CHECKED_ROOTS], { cwd: ROOT, encoding: "utf8" });
  // A file deleted in the work tree but not yet in the index is gone for the reader too.
  return out.split("\0").filter((p) => p && existsSync(join(ROOT, p)));
}

const listed = layoutPaths(readFileSync(join(ROOT, README), "utf8"));
const problems = [];
const seen = new Map();
for (const { path, line } of listed) {
  if (seen.has(path)) problems.push(`${README}:${line}: ${path} is listed twice (also line ${seen.get(path)})`);
  seen.set(path, line);
  const full = join(ROOT, path);
  if (!existsSync(full)) problems.push(`${README}:${line}: ${path} is listed but does not exist`);
  else if (!statSync(full).isFile()) problems.push(`${README}:${line}: ${path} is not a file (list files, one per line)`);
}
for (const file of trackedFiles()) {
  if (!seen.has(file)) problems.push(`${file} exists but is missing from the layout block of ${README}`);
}

if (problems.length) {
  console.error(`check-layout: the README layout and the repository disagree (${problems.length}):`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log(`check-layout: ok (${listed.length} files listed, every file under ${CHECKED_ROOTS.join(" ")} included)`);
