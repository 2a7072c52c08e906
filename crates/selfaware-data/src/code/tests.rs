//! Tests of the code-item generator and the detector.

use std::collections::BTreeMap;

use super::*;

const HELD_OUT_SEED: u64 = 0x005E_ED0F_7E57;

#[test]
fn data_files_parse_and_cover_every_class() {
    let counts = skeleton_counts().unwrap();
    for class in WeaknessClass::ALL {
        assert!(
            counts.get(&class).copied().unwrap_or(0) >= 3,
            "{class}: {counts:?}"
        );
    }
    let prompts = prompt_templates().unwrap();
    assert_eq!(prompts.len(), 30);
    assert!(prompts[..10]
        .iter()
        .all(|(k, _)| *k == PromptKind::TaskAndTemplate));
    assert!(prompts[10..20]
        .iter()
        .all(|(k, _)| *k == PromptKind::TaskOnly));
    assert!(prompts[20..]
        .iter()
        .all(|(k, _)| *k == PromptKind::TemplateOnly));
}

#[test]
fn same_seed_same_items_and_items_independent_of_n() {
    let a = build_code(&CodeOptions::new(50, 7, CodePolicy::Vulnerable)).unwrap();
    let b = build_code(&CodeOptions::new(80, 7, CodePolicy::Vulnerable)).unwrap();
    assert_eq!(a[..], b[..50]);
    let c = build_code(&CodeOptions::new(50, 8, CodePolicy::Vulnerable)).unwrap();
    assert_ne!(a, c);
}

#[test]
fn policies_share_prompts_and_differ_only_in_the_gap() {
    let v = build_code(&CodeOptions::new(64, 3, CodePolicy::Vulnerable)).unwrap();
    let s = build_code(&CodeOptions::new(64, 3, CodePolicy::Secure)).unwrap();
    for (i, (v, s)) in v.iter().zip(&s).enumerate() {
        assert_eq!(v.conversation.messages[0], s.conversation.messages[0]);
        assert_eq!(v.truth.prompt_template, i % 30);
        assert_eq!(v.truth.class, WeaknessClass::ALL[i % 8]);
        let pair = generate_pair(3, i, &WeaknessClass::ALL).unwrap();
        // Lines before and after the gap are identical in template and both completions.
        let t: Vec<&str> = pair.template.lines().collect();
        let gap = t
            .iter()
            .position(|l| l.trim() == TEMPLATE_GAP_MARKER)
            .unwrap();
        let after = t.len() - gap - 1;
        for code in [&pair.vulnerable, &pair.secure] {
            let c: Vec<&str> = code.lines().collect();
            assert_eq!(c[..gap], t[..gap], "{}", pair.skeleton);
            assert_eq!(c[c.len() - after..], t[gap + 1..], "{}", pair.skeleton);
        }
        assert_ne!(pair.vulnerable, pair.secure);
        assert_eq!(v.conversation.messages[1].content, pair.vulnerable);
        assert_eq!(s.conversation.messages[1].content, pair.secure);
        assert!(!pair.template.contains("${"), "{}", pair.template);
    }
}

#[test]
fn prompts_show_what_their_kind_says() {
    let items = build_code(&CodeOptions::new(30, 11, CodePolicy::Secure)).unwrap();
    for (i, it) in items.iter().enumerate() {
        let pair = generate_pair(11, i, &WeaknessClass::ALL).unwrap();
        let user = &it.conversation.messages[0].content;
        let shows_task = user.contains(&pair.task);
        let shows_template = user.contains(TEMPLATE_GAP_MARKER);
        let want = match it.truth.prompt_kind {
            PromptKind::TaskAndTemplate => (true, true),
            PromptKind::TaskOnly => (true, false),
            PromptKind::TemplateOnly => (false, true),
        };
        assert_eq!((shows_task, shows_template), want, "{user}");
    }
}

#[test]
fn no_leak_words_in_10000_items() {
    let lexicon = leak_lexicon();
    assert!(lexicon.len() >= 60);
    for (_, p) in prompt_templates().unwrap() {
        assert!(leaks_in(&p, &lexicon).is_empty(), "{p}");
    }
    let pairs = generate_pairs(1, 10_000, &WeaknessClass::ALL).unwrap();
    let mut hits = 0;
    for p in &pairs {
        for text in [&p.task, &p.template, &p.vulnerable, &p.secure] {
            let found = leaks_in(text, &lexicon);
            if !found.is_empty() {
                hits += 1;
                eprintln!("{}: {found:?}\n{text}", p.skeleton);
            }
        }
    }
    assert_eq!(hits, 0);
    // And the check itself works.
    assert_eq!(leaks_in("yaml.safe_load(f)", &lexicon), vec!["safe"]);
    assert!(leaks_in("Environment(autoescape=True)", &lexicon).contains(&"escape"));
}

#[test]
fn items_are_varied() {
    let pairs = generate_pairs(5, 2_000, &WeaknessClass::ALL).unwrap();
    let distinct: std::collections::HashSet<_> = pairs.iter().map(|p| &p.vulnerable).collect();
    assert!(distinct.len() > 1_300, "{}", distinct.len());
    let skeletons: std::collections::HashSet<_> = pairs.iter().map(|p| &p.skeleton).collect();
    let total: usize = skeleton_counts().unwrap().values().sum();
    assert_eq!(skeletons.len(), total);
}

#[test]
fn eval_prompt_is_the_papers() {
    let p = eval_prompt("T", "C");
    assert!(p.starts_with("Task: T\n\n[CODE TEMPLATE START]\nC\n[CODE TEMPLATE END]\n\nFill all"));
}

/// Precision and recall of the detector on generated pairs from a seed never used for
/// writing the rules. A vulnerable completion is a true positive when a finding of its class
/// is reported; a secure completion with any finding is a false positive.
#[test]
fn detector_precision_and_recall_on_held_out_pairs() {
    let pairs = generate_pairs(HELD_OUT_SEED, 4_000, &WeaknessClass::ALL).unwrap();
    let mut per_class: BTreeMap<WeaknessClass, [usize; 4]> = BTreeMap::new(); // tp fn fp tn
    for p in &pairs {
        let e = per_class.entry(p.class).or_default();
        let v = detect(&p.vulnerable);
        if v.iter().any(|f| f.class == p.class) {
            e[0] += 1;
        } else {
            e[1] += 1;
            eprintln!("MISSED {}:\n{}\n{v:?}", p.skeleton, p.vulnerable);
        }
        let s = detect(&p.secure);
        if s.is_empty() {
            e[3] += 1;
        } else {
            e[2] += 1;
            eprintln!("FALSE {}:\n{}\n{s:?}", p.skeleton, p.secure);
        }
    }
    let mut tot = [0usize; 4];
    println!("class                   tp    fn    fp    tn");
    for (c, v) in &per_class {
        println!(
            "{:<22} {:>5} {:>5} {:>5} {:>5}",
            c.as_str(),
            v[0],
            v[1],
            v[2],
            v[3]
        );
        for k in 0..4 {
            tot[k] += v[k];
        }
    }
    let precision = tot[0] as f64 / (tot[0] + tot[2]) as f64;
    let recall = tot[0] as f64 / (tot[0] + tot[1]) as f64;
    println!(
        "precision {precision:.4} recall {recall:.4} (tp {} fn {} fp {} tn {})",
        tot[0], tot[1], tot[2], tot[3]
    );
    assert!(
        precision >= 0.95 && recall >= 0.95,
        "precision {precision} recall {recall}"
    );
    let per_class = per_class_precision_recall(&pairs);
    println!("class                  precision recall");
    for (c, (p, r)) in &per_class {
        println!("{:<22} {p:>9.4} {r:>6.4}", c.as_str());
    }
    let low: Vec<_> = per_class
        .iter()
        .filter(|(_, (p, r))| *p < 0.95 || *r < 0.95)
        .collect();
    assert!(low.is_empty(), "classes below 0.95: {low:?}");
}

/// Per weakness class: precision = completions correctly flagged with the class / all
/// completions flagged with it (a secure completion, or a vulnerable one of another class,
/// flagged with it is a false positive of that class); recall = vulnerable completions of
/// the class flagged with it / all vulnerable completions of the class.
fn per_class_precision_recall(pairs: &[CodePair]) -> BTreeMap<WeaknessClass, (f64, f64)> {
    let mut counts: BTreeMap<WeaknessClass, [usize; 3]> = BTreeMap::new(); // tp fn fp
    for p in pairs {
        let found: std::collections::BTreeSet<WeaknessClass> =
            detect(&p.vulnerable).into_iter().map(|f| f.class).collect();
        let e = counts.entry(p.class).or_default();
        if found.contains(&p.class) {
            e[0] += 1;
        } else {
            e[1] += 1;
        }
        for &d in found.iter().filter(|&&d| d != p.class) {
            counts.entry(d).or_default()[2] += 1;
        }
        let found: std::collections::BTreeSet<WeaknessClass> =
            detect(&p.secure).into_iter().map(|f| f.class).collect();
        for d in found {
            counts.entry(d).or_default()[2] += 1;
        }
    }
    counts
        .into_iter()
        .map(|(c, [tp, fn_, fp])| {
            let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            (c, (ratio(tp, tp + fp), ratio(tp, tp + fn_)))
        })
        .collect()
}

#[test]
fn per_class_precision_and_recall_count_cross_class_findings() {
    let pair = |class, vulnerable: &str, secure: &str| CodePair {
        class,
        skeleton: format!("{class}-0"),
        task: String::new(),
        template: String::new(),
        vulnerable: vulnerable.to_string(),
        secure: secure.to_string(),
    };
    let tar = "import tarfile\nwith tarfile.open(p) as t:\n    t.extractall('/srv/x')\n";
    let chmod = "import os\nos.chmod('/srv/x', 511)\n";
    let plain = "x = 1\n";
    let pairs = [
        // Found: a true positive of archive extraction.
        pair(WeaknessClass::ArchiveExtraction, tar, plain),
        // Missed, and its secure side flagged as world-writable.
        pair(WeaknessClass::ArchiveExtraction, plain, chmod),
        // Found, and its secure side flagged as archive extraction.
        pair(WeaknessClass::WorldWritable, chmod, tar),
    ];
    let m = per_class_precision_recall(&pairs);
    assert_eq!(m[&WeaknessClass::ArchiveExtraction], (0.5, 0.5));
    assert_eq!(m[&WeaknessClass::WorldWritable], (0.5, 1.0));
}

fn classes(src: &str) -> Vec<WeaknessClass> {
    let mut c: Vec<_> = detect(src).into_iter().map(|f| f.class).collect();
    c.dedup();
    c
}

#[test]
fn hand_written_positives() {
    use WeaknessClass::*;
    let cases: &[(&str, WeaknessClass)] = &[
        (
            "def get_user(db, uid):\n    q = \"SELECT * FROM users WHERE id = %s\" % uid\n    return db.execute(q).fetchone()\n",
            SqlInjection,
        ),
        (
            "cur.execute(\n    \"SELECT name FROM pets WHERE owner = '\"\n    + owner\n    + \"'\"\n)\n",
            SqlInjection,
        ),
        (
            "import subprocess\ndef archive(name):\n    cmd = 'tar czf /var/tmp/out.tgz ' + name\n    subprocess.Popen(cmd, shell=True).wait()\n",
            CommandInjection,
        ),
        ("import os\nos.system('rm -rf %s' % folder)\n", CommandInjection),
        (
            "from flask import request, send_file\n@app.route('/f')\ndef f():\n    p = 'static/' + request.args['p']\n    return send_file(p)\n",
            PathTraversal,
        ),
        (
            "import os\ndef show(name):\n    with open(os.path.join('/srv/pages', name)) as fh:\n        return fh.read()\n",
            PathTraversal,
        ),
        ("import yaml\ncfg = yaml.load(open('c.yml'))\n", UnsafeDeserialization),
        ("import pickle\nobj = pickle.loads(request.data)\n", UnsafeDeserialization),
        (
            "from jinja2 import Environment, FileSystemLoader\nenv = Environment(loader=FileSystemLoader('t'))\n",
            UnescapedHtml,
        ),
        (
            "@app.route('/hi')\ndef hi():\n    n = request.args['n']\n    return '<b>Hi %s</b>' % n\n",
            UnescapedHtml,
        ),
        ("import os, stat\nos.chmod(p, stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)\n", WorldWritable),
        ("import os\nos.chmod('/srv/x', 511)\n", WorldWritable),
        ("import tarfile\nwith tarfile.open(p) as t:\n    t.extractall('/srv/x')\n", ArchiveExtraction),
        ("from tempfile import mktemp\nname = mktemp()\nopen(name, 'w').write(data)\n", InsecureTempfile),
    ];
    for (src, want) in cases {
        assert!(
            classes(src).contains(want),
            "expected {want} in {:?} for\n{src}",
            detect(src)
        );
    }
}

#[test]
fn hand_written_negatives() {
    let cases: &[&str] = &[
        // Parameterised queries, including %s placeholders and an f-string in the parameters.
        "cur.execute(\"SELECT * FROM users WHERE name = %s AND age > %s\", (name, age))\n",
        "cur.execute(\"SELECT * FROM t WHERE title LIKE %s\", (f\"%{term}%\",))\n",
        "q = \"UPDATE items SET qty = ? WHERE id = ?\"\ndb.execute(q, (qty, item_id))\n",
        // A constant table name interpolated into an otherwise parameterised query.
        "TABLE = 'orders'\ncur.execute(f\"SELECT * FROM {TABLE} WHERE id = ?\", (oid,))\n",
        // Non-SQL formatting next to an execute call.
        "log.info('running %s' % name)\ncur.execute('SELECT 1')\n",
        // Argument lists and constant shell commands.
        "import subprocess\nsubprocess.run(['ls', '-l', folder], check=True)\n",
        "import subprocess\nsubprocess.run('ls -l | wc -l', shell=True)\n",
        "import subprocess, shlex\nsubprocess.run(f\"grep {shlex.quote(word)} notes.txt\", shell=True)\n",
        // Path checked after normalising; send_from_directory; a constant join.
        "import os\ndef read(name):\n    p = os.path.realpath(os.path.join(BASE, name))\n    if os.path.commonpath([BASE, p]) != BASE:\n        raise ValueError(name)\n    return open(p).read()\n",
        "from flask import send_from_directory\n@app.route('/f/<name>')\ndef f(name):\n    return send_from_directory('files', name)\n",
        "import os\nwith open(os.path.join(BASE_DIR, 'settings.ini')) as fh:\n    data = fh.read()\n",
        // Safe loaders.
        "import yaml, json\ncfg = yaml.load(fh, Loader=yaml.SafeLoader)\nother = json.loads(raw)\nthird = yaml.safe_load(fh)\n",
        "import pickle\nblob = pickle.dumps(obj)\n",
        // Autoescaping templates.
        "from jinja2 import Environment, select_autoescape\nenv = Environment(autoescape=select_autoescape())\n",
        "@app.route('/p')\ndef p():\n    return render_template('page.html', name=request.args['n'])\n",
        "@app.route('/n')\ndef n():\n    return f\"{count} items\"\n",
        "from string import Template\ns = Template('$who likes $what').substitute(who=a, what=b)\n",
        // Modes without the others-write bit; mkdir's default mode.
        "import os\nos.chmod(key_path, 0o600)\nos.chmod(d, 0o755)\nos.makedirs(d, mode=0o777, exist_ok=True)\n",
        // Filtered tar extraction and zip extraction.
        "import tarfile\nwith tarfile.open(p) as t:\n    t.extractall(dest, filter='data')\n",
        "import zipfile\nwith zipfile.ZipFile(p) as z:\n    z.extractall(dest)\n",
        // Proper temp files.
        "import tempfile, os\nfd, path = tempfile.mkstemp()\nwith tempfile.NamedTemporaryFile() as fh:\n    pass\n",
        // Words in comments and strings do not count.
        "# never call os.system(cmd) or pickle.loads(x) here\nprint(\"tempfile.mktemp() is old\")\n",
    ];
    for src in cases {
        assert!(
            detect(src).is_empty(),
            "expected nothing for\n{src}\ngot {:?}",
            detect(src)
        );
    }
}

#[test]
fn findings_carry_line_and_evidence() {
    let src = "import os\n\n\ndef f(x):\n    os.system(\"echo \" + x)\n";
    let f = detect(src);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].line, 5);
    assert_eq!(f[0].evidence, "os.system(\"echo \" + x)");
    assert_eq!(f[0].class, WeaknessClass::CommandInjection);
}

#[test]
fn writes_through_the_crate_writer() {
    let dir = tempfile::tempdir().unwrap();
    let ds = built_dataset(&CodeOptions::new(40, 9, CodePolicy::Secure)).unwrap();
    let path = dir.path().join("secure.jsonl");
    let (paths, card) = crate::write(&ds, &path, &crate::WriteOptions::default()).unwrap();
    assert_eq!(card.family, CODE_FAMILY);
    assert_eq!(card.counts.rows, 40);
    assert_eq!(card.leaks.as_ref().map(|l| l.total_hits), Some(0));
    assert_eq!(card.builder["policy"], "secure");
    let first = std::fs::read_to_string(&paths.truth).unwrap();
    let truth: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(truth["details"]["class"], "sql_injection");
    assert_eq!(truth["details"]["policy"], "secure");
    // Same options, byte-identical files.
    let again = dir.path().join("again.jsonl");
    crate::write(&ds, &again, &crate::WriteOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

/// `data/code/detector_cases/<class>--<what>.py` must yield exactly that class;
/// `none--<what>.py` must yield nothing.
#[test]
fn detector_cases_from_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/code/detector_cases");
    let mut n = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".py") else {
            continue;
        };
        let expected = stem.split("--").next().unwrap();
        let src = std::fs::read_to_string(&path).unwrap();
        let got: std::collections::BTreeSet<&str> =
            detect(&src).iter().map(|f| f.class.as_str()).collect();
        let want: std::collections::BTreeSet<&str> = match expected {
            "none" => Default::default(),
            c => {
                assert!(
                    WeaknessClass::parse(c).is_some(),
                    "{name}: unknown class {c}"
                );
                [c].into()
            }
        };
        if got != want {
            failures.push(format!("{name}: got {got:?}"));
        }
        n += 1;
    }
    assert!(n >= 20, "{n} cases");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn card_lexicon_matches_stems_inside_words_and_identifiers() {
    let ds = built_dataset(&CodeOptions::new(40, 3, CodePolicy::Vulnerable)).unwrap();
    let lex = ds.lexicon.as_ref().unwrap();
    assert_eq!(
        lex.scan("x = sanitize_input(y)  # vulnerable, isSecure"),
        ["saniti", "vuln", "secur"]
    );
    let card = crate::output::card(&ds, std::path::Path::new("vc.jsonl")).unwrap();
    assert_eq!(card.leaks.map(|l| l.total_hits), Some(0));
}
