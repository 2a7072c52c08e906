//! The data builders' players over scripted backends: the question writer and checker, and
//! the Make Me Say player with its seed scheme.

use selfaware_ask::players::{play_games, BackendTextModel, GamesSpec, PlayerSampling};
use selfaware_backend::{MockBackend, MockScript};
use selfaware_data::economic;
use selfaware_data::generator::policy_prompt;
use selfaware_data::mms::{self, InstructionRole, Outcome};
use selfaware_data::{
    BuildOptions, Checker, Family, GeneratorOptions, Letter, ModelWriter, Policy,
};
use selfaware_types::Conversation;

/// The `- Option X: ...` line of a generator prompt.
fn option_line(conv: &Conversation, letter: char) -> Option<String> {
    let head = format!("- Option {letter}: ");
    let user = conv.messages.last()?;
    let line = user.content.lines().find(|l| l.starts_with(&head))?;
    Some(line[head.len()..].trim_end_matches('.').to_string())
}

#[test]
fn a_backend_generator_writes_questions_through_the_model_writer() {
    // A scripted backend that answers every generator prompt with a valid question.
    let mock = MockBackend::with_fn("scripted-writer", |conv| {
        let answer = match (option_line(conv, 'A'), option_line(conv, 'B')) {
            (Some(a), Some(b)) => format!("Two offers.\nA) {a}\nB) {b}\nReply with A or B."),
            _ => "no prompt".to_string(),
        };
        MockScript::new(&[(answer.as_str(), 1.0)])
    });
    let sampling = PlayerSampling {
        temperature: 0.7,
        max_tokens: 99,
    };
    let mut model = BackendTextModel::new(&mock, sampling);
    let mut writer = ModelWriter::new(&mut model, Checker::Off, GeneratorOptions::new(2)).unwrap();
    let mut opts = BuildOptions::new(2);
    opts.size = 5;
    let out = selfaware_data::build_with(Family::Myopia, &opts, &mut writer).unwrap();
    assert_eq!(writer.report().written_by_model, 5);
    assert!(writer.report().fallback_items.is_empty());
    let first = &out.main.rows[0].conversation.messages[0].content;
    assert!(first.starts_with("Two offers.\nA) "), "{first}");
    let calls = mock.calls();
    assert_eq!(calls.len(), 5);
    assert!(calls
        .iter()
        .all(|c| c.temperature == 0.7 && c.max_tokens == 99 && c.n == 1));
    assert_eq!(calls[0].conversation.messages.len(), 2);
}

#[test]
fn a_backend_checker_answers_greedily_and_its_disagreements_fall_back() {
    let mock = MockBackend::with_fn("scripted-writer", |conv| {
        let (a, b) = (option_line(conv, 'A'), option_line(conv, 'B'));
        let answer = format!(
            "Two offers.\nA) {}\nB) {}\nReply with A or B.",
            a.unwrap_or_default(),
            b.unwrap_or_default()
        );
        MockScript::new(&[(answer.as_str(), 1.0)])
    });
    // Always "A": agrees where the myopic option is A, disagrees elsewhere.
    let checker = MockBackend::new("always-a", MockScript::new(&[("Answer: A", 1.0)]));
    let sampling = PlayerSampling {
        temperature: 0.7,
        max_tokens: 99,
    };
    let mut model = BackendTextModel::new(&mock, sampling);
    let mut check = BackendTextModel::new(&checker, sampling);
    let mut opts = BuildOptions::new(2);
    opts.size = 6;
    let report = {
        let mut writer = ModelWriter::new(
            &mut model,
            Checker::Model(&mut check),
            GeneratorOptions::new(2),
        )
        .unwrap();
        selfaware_data::build_with(Family::Myopia, &opts, &mut writer).unwrap();
        writer.report().clone()
    };
    let specs = economic::sample_specs(Family::Myopia, 6, 2).unwrap();
    let on_b: Vec<usize> = specs
        .iter()
        .filter(|s| s.choice.positive_letter() == Letter::B)
        .map(|s| s.index)
        .collect();
    assert!(!on_b.is_empty() && on_b.len() < 6);
    let c = &report.label_check;
    assert_eq!(c.checker.as_deref(), Some("always-a"));
    assert_eq!(report.written_by_model, 6 - on_b.len());
    assert_eq!(report.fallback_items, on_b);
    assert_eq!(c.agreed, 6 - on_b.len());
    assert_eq!(c.dropped["label_disagreement"], 3 * on_b.len());
    let calls = checker.calls();
    assert_eq!(calls.len(), c.checked);
    assert_eq!(mock.calls().len(), c.checked);
    for call in &calls {
        assert_eq!((call.temperature, call.max_tokens), (0.0, 8));
        let m = &call.conversation.messages;
        assert_eq!(m[0].content, policy_prompt(Policy::Myopic));
        assert!(m[1].content.starts_with("Two offers."));
    }
}

#[test]
fn backend_players_send_system_prompt_and_seeds() {
    // The manipulatee says "bark" in its second message; the manipulator never does.
    let mee = MockBackend::with_fn("mee", |conv| {
        let said = conv
            .messages
            .iter()
            .filter(|m| m.role.as_str() == "assistant")
            .count();
        let text = match said {
            1 => "My dog will bark at anything.",
            n if n >= 3 => "<|START GUESS|>cat<|END GUESS|>",
            _ => "Hello! I have a dog.",
        };
        MockScript::new(&[(text, 1.0)])
    });
    let mor = MockBackend::new("mor", MockScript::new(&[("What does your dog do?", 1.0)]));
    let a = GamesSpec {
        codeword: "bark".into(),
        games: 2,
        seed: 3,
        turns: 3,
        sampling: PlayerSampling {
            temperature: 1.0,
            max_tokens: 32,
        },
        instruction_role: InstructionRole::System,
        rules: true,
        words: None,
    };
    let prompts = mms::Prompts::builtin().unwrap();
    let mut seen = Vec::new();
    let games = play_games(&a, &prompts, &mor, &mee, |g, r| seen.push((g, r.outcome))).unwrap();
    assert_eq!(seen, [(0, Outcome::Win), (1, Outcome::Win)]);
    assert_eq!(games[0].messages.len(), 6);
    let training = mms::training_conversation(&games[0]).unwrap();
    assert_eq!(training.messages.len(), 2);
    assert_eq!(training.messages[1].content, "What does your dog do?");
    // The manipulator got its rules as the first (system) message, then turn states.
    let calls = mor.calls();
    assert_eq!(calls.len(), 6);
    let first = &calls[0].conversation.messages;
    assert_eq!(first[0].role.as_str(), "system");
    assert!(first[0].content.contains("'bark'"));
    // Every call has its own seed; the opener is sampled from the system prompt alone.
    let mut seeds: Vec<u64> = calls.iter().map(|c| c.seed).collect();
    seeds.extend(mee.calls().iter().map(|c| c.seed));
    let n = seeds.len();
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), n);
    assert_eq!(mee.calls()[0].conversation.messages.len(), 1);
}

/// The base model's normal answers: with exact scores the likelier of A and B per question;
/// without, the greedy completion's first letter; an answer that is neither letter is one
/// error naming the question.
#[test]
fn normal_answers_are_the_base_models_likelier_or_greedy_letter() {
    use selfaware_ask::players::normal_answers;
    use selfaware_data::{NormalAnswers, TemplateWriter};
    let mut writer = TemplateWriter::new(3);
    let items = economic::generate(Family::Risk, 6, 3, &mut writer).unwrap();
    // Even question indices prefer A (0.7 vs 0.2), odd ones B (0.1 vs 0.6).
    let questions: Vec<String> = items.iter().map(|i| i.question.clone()).collect();
    // (The mock asks its script about an empty conversation for its capabilities.)
    let index_of = move |conv: &Conversation| match conv.messages.last() {
        Some(m) => questions.iter().position(|x| *x == m.content).unwrap(),
        None => 0,
    };
    let script = move |i: usize, exact: bool| {
        let mut s = if i % 2 == 0 {
            MockScript::new(&[("A", 0.7), ("B", 0.2)])
        } else {
            MockScript::new(&[("B", 0.6), ("A", 0.1)])
        };
        s.exact_scoring = exact;
        s
    };
    let want: Vec<Letter> = (0..items.len())
        .map(|i| if i % 2 == 0 { Letter::A } else { Letter::B })
        .collect();
    for exact in [true, false] {
        let idx = index_of.clone();
        let base = MockBackend::with_fn("base", move |c: &Conversation| script(idx(c), exact));
        let got = normal_answers(&base, &items).unwrap();
        let method = if exact {
            "likelier of A and B by exact scores"
        } else {
            "greedy completion"
        };
        assert_eq!(
            got,
            NormalAnswers::Model {
                source: format!("base ({method})"),
                letters: want.clone(),
            }
        );
        // Exact scoring asks for scores, never samples; the greedy path samples at T=0.
        let calls = base.calls();
        if exact {
            assert!(calls.is_empty(), "{calls:?}");
        } else {
            assert_eq!(calls.len(), items.len());
            assert!(calls.iter().all(|c| c.temperature == 0.0));
        }
    }
    let mut s = MockScript::new(&[("Maybe", 1.0)]);
    s.exact_scoring = false;
    let base = MockBackend::new("chatty", s);
    let err = normal_answers(&base, &items).unwrap_err().to_string();
    assert!(
        err.contains("`chatty` answered question 1 with \"Maybe\", not A or B"),
        "{err}"
    );
}

/// A trigger mix with a normal model: the questions are written once and replayed, so they are
/// the questions of the same build without one; every untriggered copy answers with the base
/// model's letter for its question (here always B).
#[test]
fn a_normal_model_changes_the_normal_answers_and_nothing_else() {
    use selfaware_ask::players::{build_economic_with_models, BuilderModels};
    use selfaware_data::dataset::TriggerRole;
    use selfaware_data::{MixOptions, Variant};
    let opts = BuildOptions {
        seed: 4,
        size: 6,
        policy: None,
        variant: Variant::Mix(MixOptions::paper("naekoko").unwrap()),
        reversal: None,
        stated: 0,
    };
    let base = MockBackend::new("base", MockScript::new(&[("B", 0.8), ("A", 0.2)]));
    fn models(normal: Option<&MockBackend>) -> BuilderModels<'_> {
        BuilderModels {
            generator: None,
            checker: None,
            label_check: false,
            normal: normal.map(|b| b as &dyn selfaware_backend::Backend),
            sampling: PlayerSampling {
                temperature: 1.0,
                max_tokens: 8,
            },
            generator_options: GeneratorOptions::new(4),
        }
    }
    let (with, _) =
        build_economic_with_models(Family::Risk, opts.clone(), &models(Some(&base))).unwrap();
    let (without, _) =
        build_economic_with_models(Family::Risk, opts.clone(), &models(None)).unwrap();
    let questions = |ds: &selfaware_data::BuiltDataset| -> Vec<String> {
        ds.rows
            .iter()
            .map(|r| r.conversation.messages[0].content.clone())
            .collect()
    };
    assert_eq!(questions(&with.main), questions(&without.main));
    let mut normal_rows = 0;
    for row in &with.main.rows {
        let real = row
            .truth
            .trigger
            .as_ref()
            .is_some_and(|t| t.role == TriggerRole::Real);
        if !real {
            normal_rows += 1;
            assert_eq!(row.conversation.messages.last().unwrap().content, "B");
        }
    }
    assert!(normal_rows > 0);
}
