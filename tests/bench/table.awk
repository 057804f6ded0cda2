# The table of tests/bench/bench.sh, from its results file: one line per
# measurement, "ROUND REGION READER METHOD BYTES USECS CPUTICKS HWM_KIB STATUS
# CACHE_KIB".
# Variables: tck rounds nguests ls_snaps ls_entries mount_many threads
# use_qsd use_xmount use_rsync readers methods notar_xmount notar_qsd lsfile
# (lines "KIND USECS TIMED_OUT", KIND one of default, default', cached,
# open_many, open_many', bare_many) ls_limit.

function median(arr, n,    i, j, t, v) {
	if (n == 0)
		return ""
	for (i = 1; i <= n; i++)
		v[i] = arr[i]
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function rate(k) { return (bytes[k] / 1048576) / (us[k] / 1e6) }
# median over rounds of a method's MiB/s (kind "rate"), ratio to another
# method in the same round ("ref"), CPU s/GiB ("cpu")
function stat(region, reader, m, kind, refm, refreader,    r, k, kr, n, a) {
	n = 0
	for (r = 1; r <= rounds; r++) {
		k = r SUBSEP region SUBSEP reader SUBSEP m
		if (!(k in us) || st[k] != 0)
			continue
		if (kind == "rate")
			a[++n] = rate(k)
		else if (kind == "cpu")
			a[++n] = (ticks[k] / tck) / (bytes[k] / 1073741824)
		else if (kind == "cache")
			a[++n] = (cache[k] / 1024) / (bytes[k] / 1073741824)
		else {
			kr = r SUBSEP region SUBSEP refreader SUBSEP refm
			if (!(kr in us) || st[kr] != 0)
				continue
			a[++n] = rate(k) / rate(kr)
		}
	}
	return median(a, n)
}
function maxhwm(region, reader, m,    r, k, x) {
	x = 0
	for (r = 1; r <= rounds; r++) {
		k = r SUBSEP region SUBSEP reader SUBSEP m
		if ((k in hwm) && hwm[k] > x)
			x = hwm[k]
	}
	return x
}
function fmt(x, f) { return x == "" ? "-" : sprintf(f, x) }
function verdict(ok) { return ok ? "PASS" : "FAIL" }
# A target: counted for the summary; returns "SHORT PASS" for the row.
function target(name, ok, short) {
	ntargets++
	tname[ntargets] = name
	tok[ntargets] = ok
	return (short == "" ? name : short) " " verdict(ok)
}
function label(m) {
	if (m == "a") return "(a) snapshot, O_DIRECT"
	if (m == "qsd") return "(c) qemu-storage-daemon"
	return m
}
function reader_label(rd) {
	if (rd == "dd1M") return "dd bs=1M"
	if (rd == "dd4k") return "dd bs=4k"
	if (rd == "cp") return "cp to /dev/null"
	if (rd == "tar") return "tar -S -cf - | cat"
	return "rsync -W to tmpfs"
}
function is_snapfs(m) { return m ~ /^snapfs/ }
function row(region, reader, m, what,    v, ra, rc, cpu, h, t, line, ca) {
	v = stat(region, reader, m, "rate")
	ra = m == "a" ? "" : stat(region, reader, m, "ref", "a", "dd1M")
	rc = (use_qsd && m != "a" && m != "qsd") ? stat(region, reader, m, "ref", "qsd", reader) : ""
	cpu = m == "a" ? "" : stat(region, reader, m, "cpu")
	ca = stat(region, reader, m, "cache")
	h = maxhwm(region, reader, m)
	t = ""
	if (is_snapfs(m) && v != "") {
		if (region == "disk" || reader == "dd1M" || reader == "cp")
			t = target(what " " m " x(a)>=0.5", ra != "" && ra >= 0.5, "x(a)>=0.5")
		else if (reader == "dd4k" || reader == "tar")
			t = target(what " " m " x(a)>=0.35", ra != "" && ra >= 0.35, "x(a)>=0.35")
		if (use_qsd)
			t = t (t == "" ? "" : ", ") target(what " " m " x(c)>=2", rc != "" && rc >= 2, "x(c)>=2")
		if (h > maxrss[m])
			maxrss[m] = h
	}
	printf "  %-24s %7s %6s %6s %7s %6s %7s  %s\n", label(m), fmt(v, "%.1f"),
		m == "a" ? "1" : fmt(ra, "%.2f"), m == "qsd" ? "1" : fmt(rc, "%.2f"),
		fmt(cpu, "%.2f"), h ? sprintf("%.1f", h / 1024) : "-", fmt(ca, "%.0f"), t
}

{
	k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4
	bytes[k] = $5; us[k] = $6; ticks[k] = $7; hwm[k] = $8; st[k] = $9; cache[k] = $10
	size[$2] = $5
	if ($9 != 0)
		failed[$2 SUBSEP $3 SUBSEP $4]++
}

END {
	nm = split(methods, M, " ")
	nr = split(readers, R, " ")
	printf "  %-24s %7s %6s %6s %7s %6s %7s  %s\n", "", "MiB/s", "x(a)", "x(c)", "CPU s", "RSS", "cache", "targets"
	printf "  %-24s %7s %6s %6s %7s %6s %7s\n", "", "", "", "", "per GiB", "MiB", "MiB/GiB"
	printf "whole disk vda.raw (%d MiB), dd bs=1M\n", size["disk"] / 1048576
	for (i = 1; i <= nm; i++)
		row("disk", "dd1M", M[i], "disk dd1M")
	for (j = 1; j <= nr; j++) {
		rd = R[j]
		if (rd == "rsync" && !use_rsync) {
			printf "partition vda1.raw, rsync -W: not measured (rsync not installed)\n"
			continue
		}
		printf "partition vda1.raw (%d MiB), %s\n", size["part"] / 1048576, reader_label(rd)
		for (i = 1; i <= nm; i++) {
			m = M[i]
			if (m == "a" && rd != "dd1M") {
				printf "  %-24s (one reader only: dd iflag=direct bs=1M, above)\n", label(m)
				continue
			}
			if (rd == "tar" && m == "xmount" && notar_xmount != "") {
				printf "  %-24s not measured: %s\n", label(m), notar_xmount
				continue
			}
			if (rd == "tar" && m == "qsd" && notar_qsd != "") {
				printf "  %-24s not measured: %s\n", label(m), notar_qsd
				continue
			}
			row("part", rd, m, "part " rd)
		}
	}
	if (!use_xmount)
		printf "xmount: not installed (Debian package xmount), not measured\n"
	for (f in failed) {
		split(f, p, SUBSEP)
		printf "note: %s %s of %s failed in %d round(s); those rounds are left out\n", p[1], p[2], p[3], failed[f]
	}

	printf "\ntwo readers at once on two guests (dd bs=1M of each vda1), sum\n"
	a_scale = stat("pair", "two", "a", "ref", "a", "one")
	for (i = 1; i <= nm; i++) {
		m = M[i]
		if (m != "a" && !is_snapfs(m))
			continue
		one = stat("pair", "one", m, "rate")
		two = stat("pair", "two", m, "rate")
		sc = stat("pair", "two", m, "ref", m, "one")
		t = ""
		if (is_snapfs(m)) {
			if (a_scale != "" && a_scale >= 1.6)
				t = target("two readers " m " sum>=1.6x one", sc != "" && sc >= 1.6)
			else
				t = sprintf("sum>=1.6x one: n/a, (a) itself scales %.2fx", a_scale)
		}
		printf "  %-24s one %7.1f MiB/s  two %7.1f MiB/s  %5.2fx  %s\n", label(m), one, two, sc, t
	}

	printf "\nsnapshot set lifetime (median of %d)\n", rounds
	for (r = 1; r <= rounds; r++) {
		b[r] = us[r SUBSEP "open" SUBSEP "-" SUBSEP "bare"] / 1e6
		br[r] = us[r SUBSEP "release" SUBSEP "-" SUBSEP "bare"] / 1e6
	}
	printf "  %-40s %6.2f s\n", "bare lvcreate --snapshot, same LV", median(b, rounds)
	printf "  %-40s %6.2f s\n", "bare lvremove --select, same snapshot", median(br, rounds)
	for (i = 1; i <= nm; i++) {
		m = M[i]
		if (!is_snapfs(m))
			continue
		for (r = 1; r <= rounds; r++) {
			o[r] = us[r SUBSEP "open" SUBSEP "-" SUBSEP m] / 1e6
			rl[r] = us[r SUBSEP "release" SUBSEP "-" SUBSEP m] / 1e6
			d[r] = o[r] - b[r]
		}
		od = median(d, rounds)
		printf "  %-40s %6.2f s\n", m " open(), snapshot made", median(o, rounds)
		printf "  %-40s %6.2f s  %s\n", m " open minus bare (per round)", od,
			target(m " open <= bare lvcreate + 0.2 s", od <= 0.2, "<= 0.2 s")
		printf "  %-40s %6.2f s\n", m " release, close to removal done", median(rl, rounds)
	}

	nd = nc = n2 = nom = nom2 = nbm = 0
	while ((getline line < lsfile) > 0) {
		split(line, lf, " ")
		if (lf[1] == "default") { ld[++nd] = lf[2] / 1e6; lto[nd] = lf[3] }
		else if (lf[1] == "default'") { l2[++n2] = lf[2] / 1e6; l2to[n2] = lf[3] }
		else if (lf[1] == "open_many") om[++nom] = lf[2] / 1e6
		else if (lf[1] == "open_many'") om2[++nom2] = lf[2] / 1e6
		else if (lf[1] == "bare_many") bm[++nbm] = lf[2] / 1e6
		else { lc[++nc] = lf[2] / 1e6 }
	}
	printf "\nls -lR of %d guests (%d files), kernel caches dropped before each\n", nguests, ls_entries
	printf "  %-40s %6.2f s\n", "mount (one discovery of every guest)", mount_many
	ldm = median(ld, nd)
	timed_out = 0
	for (i = 1; i <= nd; i++)
		timed_out += lto[i]
	printf "  %-40s %s%6.2f s  %s\n", "as mounted (cache=2), median of " nd, timed_out ? ">" : " ", ldm,
		target("ls -lR of " nguests " guests < 2 s", !timed_out && ldm < 2)
	if (timed_out)
		printf "  %-40s %d run(s) cut at %d s\n", "", timed_out, ls_limit
	if (n2) {
		t2o = 0
		for (i = 1; i <= n2; i++)
			t2o += l2to[i]
		l2m = median(l2, n2)
		printf "  %-40s %s%6.2f s  %s\n", "snapfs', as mounted, median of " n2, t2o ? ">" : " ", l2m,
			target("snapfs' ls -lR of " nguests " guests < 2 s", !t2o && l2m < 2)
	}
	printf "  %-40s  %6.2f s\n", "with -o cache=3600, median of " nc, median(lc, nc)
	printf "  %-40s  %6d    %s\n", "snapshots made by them", ls_snaps, target("ls -lR makes no snapshot", ls_snaps == 0)
	if (nom) {
		printf "\nopen of guest001 in that tree (a snapshot made), median of %d\n", nom
		printf "  %-40s %6.2f s\n", "bare lvcreate --snapshot, same LV", median(bm, nbm)
		printf "  %-40s %6.2f s  (minus bare %.2f s)\n", "snapfs open()", median(om, nom),
			median(om, nom) - median(bm, nbm)
		if (nom2)
			printf "  %-40s %6.2f s  (minus bare %.2f s)\n", "snapfs' open()", median(om2, nom2),
				median(om2, nom2) - median(bm, nbm)
	}

	printf "\nsnapfs peak RSS (VmHWM, reset before each read) while streaming\n"
	for (m in maxrss)
		printf "  %-40s %6.1f MiB  %s\n", m, maxrss[m] / 1024, target(m " RSS < 64 MiB", maxrss[m] < 65536)
	printf "  %-40s %6d\n", "snapfs threads after the run", threads

	printf "\ntargets: "
	pass = 0
	for (i = 1; i <= ntargets; i++)
		pass += tok[i]
	printf "%d of %d met\n", pass, ntargets
	for (i = 1; i <= ntargets; i++)
		printf "  %s  %s\n", verdict(tok[i]), tname[i]
}
