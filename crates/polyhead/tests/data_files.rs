//! Data from files: NumPy arrays, and CSV with partial labels: the table,
//! its masks through to the loss
//! (a masked head's loss is the loss over its labelled rows only), and
//! every malformed input as an error naming the file, line and column.

use polyhead::data::CsvReader;
use polyhead::prelude::*;

#[derive(MultiOutput)]
struct Net {
    #[trunk]
    body: Dense,
    #[head(loss = SparseCrossEntropy::from_logits(), target = Labels)]
    class: Dense,
    #[head(loss = Mse::new(), weight = 0.5)]
    bbox: Dense,
}

fn folder(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("polyhead-data-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const ROWS: &str = "a,b,class,x,y,note\n\
    0.5,1.0,2,0.1,0.2,first\n\
    -1.0,0.25,,0.3,0.4,no class\n\
    2.0,-0.5,0,,,no box\n\
    0.0,0.0,1,0.5,0.6,\n";

fn reader() -> CsvReader {
    CsvReader::new()
        .inputs(&["a", "b"])
        .classes("class", 3)
        .values("bbox", &["x", "y"])
}

#[test]
fn a_table_with_partial_labels_masks_what_is_missing() {
    let dir = folder("table");
    let path = dir.join("rows.csv");
    std::fs::write(&path, ROWS).unwrap();
    let table = reader().read::<f32>(&path).unwrap();
    assert_eq!(table.rows(), 4);
    assert_eq!(
        table.inputs().to_vec(),
        vec![0.5, 1.0, -1.0, 0.25, 2.0, -0.5, 0.0, 0.0]
    );
    assert_eq!(
        table.mask("class").unwrap().to_vec(),
        vec![1.0, 0.0, 1.0, 1.0]
    );
    assert_eq!(
        table.mask("bbox").unwrap().to_vec(),
        vec![1.0, 1.0, 0.0, 1.0]
    );
    assert_eq!(
        table.values("bbox").unwrap().to_vec(),
        vec![0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.5, 0.6]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_masked_heads_loss_is_the_loss_over_its_labelled_rows_only() {
    let dir = folder("loss");
    let path = dir.join("rows.csv");
    std::fs::write(&path, ROWS).unwrap();
    let table = reader().read::<f32>(&path).unwrap();
    let mut rng = Rng::new(1);
    let net = Net {
        body: Dense::builder(2, 4)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(4, 3, &mut rng).unwrap(),
        bbox: Dense::new(4, 2, &mut rng).unwrap(),
    };
    let targets = NetTargets::new(
        table.labels("class").unwrap(),
        table.values("bbox").unwrap(),
    )
    .class_mask(table.mask("class").unwrap())
    .bbox_mask(table.mask("bbox").unwrap());
    let tape = Tape::no_record();
    let outputs = net
        .forward_heads(tape.constant(table.inputs().clone()))
        .unwrap();
    let logs = net
        .weighted_loss(&outputs, &targets, &Default::default())
        .unwrap()
        .logs()
        .unwrap();
    let get = |name: &str| logs.iter().find(|(n, _)| n == name).unwrap().1;
    // The same heads on the labelled rows alone, without masks.
    let rows_only = |rows: &[usize]| {
        let x = polyhead::tensor::Tensor::from_vec(
            rows.iter()
                .flat_map(|&r| table.inputs().to_vec()[2 * r..2 * r + 2].to_vec())
                .collect(),
            &[rows.len(), 2],
        )
        .unwrap();
        let t = polyhead::TargetSet::select_rows(
            &NetTargets::new(
                table.labels("class").unwrap(),
                table.values("bbox").unwrap(),
            ),
            rows,
        )
        .unwrap();
        let outputs = net.forward_heads(tape.constant(x)).unwrap();
        net.weighted_loss(&outputs, &t, &Default::default())
            .unwrap()
            .logs()
            .unwrap()
    };
    let class_rows = rows_only(&[0, 2, 3]);
    let bbox_rows = rows_only(&[0, 1, 3]);
    let from = |logs: &[(String, f64)], name: &str| logs.iter().find(|(n, _)| n == name).unwrap().1;
    assert!((get("class_loss") - from(&class_rows, "class_loss")).abs() < 1e-6);
    assert!((get("bbox_loss") - from(&bbox_rows, "bbox_loss")).abs() < 1e-6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_files_are_errors_naming_the_file_line_and_column() {
    let dir = folder("bad");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let err = |path: &std::path::Path| reader().read::<f32>(path).unwrap_err().to_string();
    let path = write("column.csv", "a,class,x,y\n1,2,3,4\n");
    assert_eq!(
        err(&path),
        format!(
            "{}: no column `b` (the header has: a, class, x, y)",
            path.display()
        )
    );
    let path = write("number.csv", "a,b,class,x,y\n1,2,0,3,4\n1,zz,0,3,4\n");
    assert_eq!(
        err(&path),
        format!(
            "{}: line 3, column `b`: `zz` is not a finite number",
            path.display()
        )
    );
    let path = write("class.csv", "a,b,class,x,y\n1,2,3,3,4\n");
    assert_eq!(
        err(&path),
        format!(
            "{}: line 2, column `class`: class 3 is not in 0..3",
            path.display()
        )
    );
    let path = write("input.csv", "a,b,class,x,y\n1,,0,3,4\n");
    assert_eq!(
        err(&path),
        format!(
            "{}: line 2, column `b`: an input cell is empty (only targets may be missing)",
            path.display()
        )
    );
    let path = write("fields.csv", "a,b,class,x,y\n1,2,0,3,4\n1,2,0\n");
    assert_eq!(
        err(&path),
        format!(
            "{}: line 3, 3 fields where the header has 5",
            path.display()
        )
    );
    let path = write("nan.csv", "a,b,class,x,y\n1,NaN,0,3,4\n");
    assert_eq!(
        err(&path),
        format!(
            "{}: line 2, column `b`: `NaN` is not a finite number",
            path.display()
        )
    );
    let missing = dir.join("missing.csv");
    assert!(err(&missing).starts_with(&format!("{}: ", missing.display())));
    // Asking for a head the mapping does not have, or the wrong kind.
    let table = reader().read::<f32>(write("ok.csv", ROWS)).unwrap();
    assert!(
        table
            .labels("bbox")
            .unwrap_err()
            .to_string()
            .ends_with("head `bbox` holds values, not classes: use `values`")
    );
    assert!(
        table
            .mask("size")
            .unwrap_err()
            .to_string()
            .ends_with("no head `size` in the mapping (heads: class, bbox)")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `skip_bad_rows`, every row `read` would refuse is left out and
/// listed with its line and reason; the good rows, their targets and masks
/// are those of the file without the bad rows.
#[test]
fn skipping_bad_rows_lists_each_and_keeps_the_rest() {
    let dir = folder("skip");
    let path = dir.join("mixed.csv");
    std::fs::write(
        &path,
        "a,b,class,x,y,note\n\
         0.5,1.0,2,0.1,0.2,good\n\
         1,2,0\n\
         -1.0,0.25,,0.3,0.4,good without class\n\
         1,abc,0,1,1,bad number\n\
         1,2,9,1,1,bad class\n\
         ,2,1,1,1,empty input\n\
         2.0,-0.5,0,,,good without box\n",
    )
    .unwrap();
    let clean = dir.join("clean.csv");
    std::fs::write(
        &clean,
        "a,b,class,x,y,note\n\
         0.5,1.0,2,0.1,0.2,good\n\
         -1.0,0.25,,0.3,0.4,good without class\n\
         2.0,-0.5,0,,,good without box\n",
    )
    .unwrap();
    assert!(reader().read::<f64>(&path).is_err(), "refused by default");
    let table = reader().skip_bad_rows(true).read::<f64>(&path).unwrap();
    let expected = reader().read::<f64>(&clean).unwrap();
    assert!(expected.skipped().is_empty());
    assert_eq!(table.inputs().to_vec(), expected.inputs().to_vec());
    assert_eq!(
        table.labels("class").unwrap().as_array(),
        expected.labels("class").unwrap().as_array()
    );
    assert_eq!(
        table.values("bbox").unwrap().to_vec(),
        expected.values("bbox").unwrap().to_vec()
    );
    for head in ["class", "bbox"] {
        assert_eq!(
            table.mask(head).unwrap().to_vec(),
            expected.mask(head).unwrap().to_vec()
        );
    }
    let skipped: Vec<(u64, &str)> = table
        .skipped()
        .iter()
        .map(|s| (s.line, s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (3, "3 fields where the header has 6"),
            (5, "column `b`: `abc` is not a finite number"),
            (6, "column `class`: class 9 is not in 0..3"),
            (
                7,
                "column `a`: an input cell is empty (only targets may be missing)"
            ),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npy_files_round_trip_and_refuse_other_dtypes_by_name() {
    use polyhead::data::{read_npy, write_npy};
    let dir = folder("npy");
    let t =
        polyhead::tensor::Tensor::<f64>::from_vec(vec![0.1, -2.0, 3.5, 1e-300, 7.0, 8.0], &[3, 2])
            .unwrap();
    write_npy(dir.join("t.npy"), &t).unwrap();
    let back = read_npy::<f64>(dir.join("t.npy")).unwrap();
    assert_eq!((back.shape(), back.to_vec()), (t.shape(), t.to_vec()));
    // float64 read as f32 rounds to nearest; float32 read as f64 is exact.
    assert_eq!(
        read_npy::<f32>(dir.join("t.npy")).unwrap().to_vec()[0],
        0.1f32
    );
    write_npy(
        dir.join("s.npy"),
        &polyhead::tensor::Tensor::<f32>::from_vec(vec![0.1], &[1]).unwrap(),
    )
    .unwrap();
    assert_eq!(
        read_npy::<f64>(dir.join("s.npy")).unwrap().to_vec(),
        vec![f64::from(0.1f32)]
    );
    // An integer array (a hand-written header for int64), a missing file,
    // a truncated file.
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(dir.join("ints.npy"), &bytes).unwrap();
    let err = read_npy::<f32>(dir.join("ints.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: not a float32 or float64 .npy array",
            dir.join("ints.npy").display()
        )),
        "{err}"
    );
    assert!(
        read_npy::<f32>(dir.join("none.npy"))
            .unwrap_err()
            .to_string()
            .starts_with(&dir.join("none.npy").display().to_string())
    );
    let full = std::fs::read(dir.join("t.npy")).unwrap();
    std::fs::write(dir.join("short.npy"), &full[..full.len() - 4]).unwrap();
    assert!(read_npy::<f64>(dir.join("short.npy")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_image_folder_reads_resized_images_with_partial_labels() {
    use polyhead::data::ImageFolder;
    let dir = folder("images");
    // A 2x2 grey PNG (left column black, right white), an RGB JPEG, and a
    // manifest whose second row has no class.
    image::GrayImage::from_fn(2, 2, |x, _| image::Luma([if x == 0 { 0 } else { 255 }]))
        .save(dir.join("a.png"))
        .unwrap();
    image::RgbImage::from_pixel(6, 6, image::Rgb([255, 255, 255]))
        .save(dir.join("b.jpg"))
        .unwrap();
    std::fs::write(
        dir.join("manifest.csv"),
        "file,class,x\na.png,1,0.5\nb.jpg,,0.25\n",
    )
    .unwrap();
    let targets = CsvReader::new().classes("class", 2).values("box", &["x"]);
    let (images, table) = ImageFolder::new(&dir, "manifest.csv", "file", [2, 2], 1)
        .read::<f32>(&targets)
        .unwrap();
    assert_eq!(images.shape(), &[2, 2, 2, 1]);
    assert_eq!(&images.to_vec()[..4], &[0.0, 1.0, 0.0, 1.0]);
    // JPEG is lossy: white within a few levels.
    assert!(
        images.to_vec()[4..].iter().all(|&v| v > 0.95),
        "{:?}",
        images.to_vec()
    );
    assert_eq!(table.mask("class").unwrap().to_vec(), vec![1.0, 0.0]);
    assert_eq!(table.values("box").unwrap().to_vec(), vec![0.5, 0.25]);
    // RGB keeps three channels.
    let (rgb, _) = ImageFolder::new(&dir, "manifest.csv", "file", [3, 3], 3)
        .read::<f32>(&targets)
        .unwrap();
    assert_eq!(rgb.shape(), &[2, 3, 3, 3]);

    // A missing image, an undecodable one, an empty file cell.
    let manifest = dir.join("manifest.csv").display().to_string();
    let err = |text: &str| {
        std::fs::write(dir.join("manifest.csv"), text).unwrap();
        ImageFolder::new(&dir, "manifest.csv", "file", [2, 2], 1)
            .read::<f32>(&targets)
            .unwrap_err()
            .to_string()
    };
    let missing = err("file,class,x\na.png,1,0.5\nnone.png,0,0.1\n");
    assert!(
        missing.starts_with(&format!("{manifest}: line 3, file `")) && missing.contains("none.png"),
        "{missing}"
    );
    std::fs::write(dir.join("bad.png"), b"not an image").unwrap();
    let bad = err("file,class,x\nbad.png,1,0.5\n");
    assert!(
        bad.starts_with(&format!("{manifest}: line 2, file `")) && bad.contains("bad.png"),
        "{bad}"
    );
    assert_eq!(
        err("file,class,x\n,1,0.5\n"),
        format!("{manifest}: line 2, column `file`: the file cell is empty")
    );
    // Skipping the manifest's bad rows keeps each image with its own
    // targets: the rows left are a.png (class 1) and b.jpg (no class).
    std::fs::write(
        dir.join("manifest.csv"),
        "file,class,x\n,1,0.5\na.png,1,0.5\nb.jpg,5,0.1\nb.jpg,,0.25\n",
    )
    .unwrap();
    let (images, table) = ImageFolder::new(&dir, "manifest.csv", "file", [2, 2], 1)
        .read::<f32>(&targets.clone().skip_bad_rows(true))
        .unwrap();
    assert_eq!(images.shape(), &[2, 2, 2, 1]);
    assert_eq!(&images.to_vec()[..4], &[0.0, 1.0, 0.0, 1.0]);
    assert_eq!(table.mask("class").unwrap().to_vec(), vec![1.0, 0.0]);
    assert_eq!(table.values("box").unwrap().to_vec(), vec![0.5, 0.25]);
    assert_eq!(
        table.skipped().iter().map(|s| s.line).collect::<Vec<_>>(),
        [2, 4]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn bits(net: &Net) -> Vec<u32> {
    net.parameters()
        .iter()
        .flat_map(|(_, p)| p.value().to_vec())
        .map(f32::to_bits)
        .collect()
}

fn fresh_net() -> Net {
    let mut rng = Rng::new(9);
    Net {
        body: Dense::builder(2, 6)
            .activation(Activation::Tanh)
            .build(&mut rng)
            .unwrap(),
        class: Dense::new(6, 3, &mut rng).unwrap(),
        bbox: Dense::new(6, 2, &mut rng).unwrap(),
    }
}

fn trainer() -> polyhead::Trainer<Net, f32> {
    polyhead::Trainer::new(Adam::new(0.01).build())
        .epochs(3)
        .batch_size(7)
        .shuffle(Some(5))
        .progress(polyhead::Progress::Silent)
}

#[test]
fn fit_dataset_streams_rows_of_an_npy_file_and_trains_as_fit_does() {
    use polyhead::data::{FromFn, NpyRows, write_npy};
    let dir = folder("stream");
    let x = polyhead::tensor::Tensor::<f32>::rand_normal(&[50, 2], 0.0, 1.0, 3).unwrap();
    let classes: Vec<usize> = (0..50).map(|i| i % 3).collect();
    let boxes = polyhead::tensor::Tensor::<f32>::rand_normal(&[50, 2], 0.0, 1.0, 4).unwrap();
    write_npy(dir.join("x.npy"), &x).unwrap();
    let targets = NetTargets::new(Labels::from_classes(&classes), boxes.clone());

    // In memory.
    let mut a = fresh_net();
    let ha = trainer().fit(&mut a, &x, &targets).unwrap();
    // The inputs read from disk row by row, on the reader thread.
    let rows = NpyRows::open(dir.join("x.npy")).unwrap();
    let data = FromFn::new(rows.len(), |r: &[usize]| {
        Ok((
            rows.rows::<f32>(r)?,
            polyhead::TargetSet::select_rows(&targets, r)?,
        ))
    });
    // Read in the step (a pool with a thread per core), and on the reader
    // thread (a one-thread pool leaves a core for it, on any machine with
    // two cores or more).
    let mut b = fresh_net();
    let hb = trainer().fit_dataset(&mut b, &data).unwrap();
    assert_eq!(bits(&a), bits(&b), "the same steps in the same order");
    assert_eq!(ha.get("loss"), hb.get("loss"));
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut c = fresh_net();
    let hc = one
        .install(|| trainer().fit_dataset(&mut c, &data))
        .unwrap();
    assert_eq!(
        bits(&a),
        bits(&c),
        "the reader thread's batches, in the same order"
    );
    assert_eq!(ha.get("loss"), hc.get("loss"));

    // Scored and predicted from the file: the numbers of `evaluate` and
    // `predict` on the tensors, with batches that do not divide the rows.
    let scorer = trainer().batch_size(7).metric("class", Metric::Accuracy);
    let in_memory = scorer.evaluate(&mut a, &x, &targets).unwrap();
    let streamed = scorer.evaluate_dataset(&mut a, &data).unwrap();
    assert_eq!(in_memory, streamed);
    assert_eq!(
        in_memory
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["loss", "class_loss", "bbox_loss", "class_accuracy"]
    );
    let p = scorer.predict(&mut a, &x).unwrap();
    let q = scorer.predict_dataset(&mut a, &data).unwrap();
    assert_eq!(p.class.to_vec(), q.class.to_vec());
    assert_eq!(p.bbox.to_vec(), q.bbox.to_vec());
    assert_eq!(q.bbox.shape(), &[50, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `.npy` whose rows do not have the model's input shape: an error
/// naming both shapes at the first step, no panic.
#[test]
fn an_npy_of_the_wrong_row_shape_is_an_error_naming_the_shapes() {
    use polyhead::data::{FromFn, NpyRows, write_npy};
    let dir = folder("wrong-shape");
    write_npy(
        dir.join("x.npy"),
        &polyhead::tensor::Tensor::<f32>::zeros(&[10, 3]).unwrap(),
    )
    .unwrap();
    let rows = NpyRows::open(dir.join("x.npy")).unwrap();
    let data = FromFn::new(rows.len(), |r: &[usize]| {
        Ok((
            rows.rows::<f32>(r)?,
            NetTargets::new(
                Labels::from_classes(&vec![0; r.len()]),
                polyhead::tensor::Tensor::zeros(&[r.len(), 2])?,
            ),
        ))
    });
    let mut net = fresh_net();
    let err = trainer()
        .fit_dataset(&mut net, &data)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "body: dense: input has 3 features (shape [7, 3]), the layer expects 2"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fit_dataset_reports_bad_batches_and_refuses_a_validation_split() {
    use polyhead::data::FromFn;
    let good = |r: &[usize]| -> polyhead::Result<(polyhead::tensor::Tensor<f32>, NetTargets<f32>)> {
        let x = polyhead::tensor::Tensor::from_vec(
            r.iter().flat_map(|&i| [i as f32, 1.0]).collect(),
            &[r.len(), 2],
        )?;
        let t = NetTargets::new(
            Labels::from_classes(&r.iter().map(|&i| i % 3).collect::<Vec<_>>()),
            polyhead::tensor::Tensor::zeros(&[r.len(), 2])?,
        );
        Ok((x, t))
    };
    // A reader error at a row reaches fit_dataset as it is.
    let failing = FromFn::new(30, |r: &[usize]| {
        if r.contains(&20) {
            return Err(polyhead::Error::Other("row 20 is corrupt".into()));
        }
        good(r)
    });
    let mut net = fresh_net();
    let err = trainer()
        .shuffle(None)
        .fit_dataset(&mut net, &failing)
        .unwrap_err();
    assert_eq!(err.to_string(), "row 20 is corrupt");
    // The same through the reader thread (a one-thread pool leaves it a core).
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let err = one
        .install(|| trainer().shuffle(None).fit_dataset(&mut net, &failing))
        .unwrap_err();
    assert_eq!(err.to_string(), "row 20 is corrupt");
    let stopped = one
        .install(|| {
            trainer()
                .epochs(50)
                .callback(polyhead::EarlyStopping::new("loss").patience(0))
                .fit_dataset(&mut net, &FromFn::new(30, good))
        })
        .unwrap();
    assert!(
        stopped.epochs() < 50,
        "early stopping ends the reader thread"
    );
    // NaN in a batch's inputs is refused as it arrives.
    let nan = FromFn::new(30, |r: &[usize]| {
        let (x, t) = good(r)?;
        let mut v = x.to_vec();
        if r.contains(&11) {
            v[0] = f32::NAN;
        }
        Ok((polyhead::tensor::Tensor::from_vec(v, x.shape())?, t))
    });
    let err = trainer()
        .shuffle(None)
        .fit_dataset(&mut net, &nan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input x") && err.contains("NaN"), "{err}");
    let err = trainer()
        .evaluate_dataset(&mut net, &nan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input x") && err.contains("NaN"), "{err}");
    let err = trainer().predict_dataset(&mut net, &failing).unwrap_err();
    assert_eq!(err.to_string(), "row 20 is corrupt");
    // A data set giving fewer rows than asked for.
    let short = FromFn::new(30, |r: &[usize]| good(&r[1..]));
    let err = trainer()
        .evaluate_dataset(&mut net, &short)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("evaluate_dataset: a batch of 7 rows was asked for, the data set gave 6"),
        "{err}"
    );
    let err = trainer()
        .validation_split(0.2)
        .fit_dataset(&mut net, &FromFn::new(30, good))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fit_dataset: validation_split 0.2 needs the whole data in memory; give validation_data instead"
    );
    // Early stopping ends the reader thread too (the test ends, nothing hangs).
    let stopped = trainer()
        .epochs(50)
        .callback(polyhead::EarlyStopping::new("loss").patience(0))
        .fit_dataset(&mut net, &FromFn::new(30, good))
        .unwrap();
    assert!(stopped.epochs() < 50);
}

#[test]
fn npy_rows_refuse_what_they_cannot_read() {
    use polyhead::data::{NpyRows, write_npy};
    let dir = folder("rows");
    write_npy(
        dir.join("ok.npy"),
        &polyhead::tensor::Tensor::<f64>::zeros(&[4, 3]).unwrap(),
    )
    .unwrap();
    let full = std::fs::read(dir.join("ok.npy")).unwrap();
    std::fs::write(dir.join("short.npy"), &full[..full.len() - 8]).unwrap();
    let err = NpyRows::open(dir.join("short.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is truncated"), "{err}");
    std::fs::write(dir.join("text.npy"), b"hello, world").unwrap();
    let err = NpyRows::open(dir.join("text.npy")).unwrap_err().to_string();
    assert!(err.ends_with("not an .npy file (no magic string)"), "{err}");
    std::fs::write(dir.join("empty.npy"), b"").unwrap();
    let err = NpyRows::open(dir.join("empty.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("not an .npy file (no magic string)"), "{err}");
    std::fs::write(dir.join("header.npy"), &full[..20]).unwrap();
    let err = NpyRows::open(dir.join("header.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("truncated header"), "{err}");
    let rows = NpyRows::open(dir.join("ok.npy")).unwrap();
    assert_eq!(rows.rows::<f32>(&[1, 3]).unwrap().shape(), &[2, 3]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npz_archives_compressed_or_not_and_their_mistakes() {
    use polyhead::data::{read_npz, write_npz};
    let dir = folder("npz");
    let x = polyhead::tensor::Tensor::<f64>::from_vec(vec![0.5, -1.5, 2.25, 4.0], &[2, 2]).unwrap();
    write_npz(dir.join("plain.npz"), &[("x", &x)]).unwrap();
    assert_eq!(
        read_npz::<f64>(dir.join("plain.npz"), "x")
            .unwrap()
            .to_vec(),
        x.to_vec()
    );
    // numpy.savez_compressed, and an integer array beside it.
    let mut writer = ndarray_npy::NpzWriter::new_compressed(
        std::fs::File::create(dir.join("packed.npz")).unwrap(),
    );
    writer
        .add_array("x", &ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]))
        .unwrap();
    writer
        .add_array("ids", &ndarray::arr1(&[1i64, 2, 3]))
        .unwrap();
    writer.finish().unwrap();
    assert_eq!(
        read_npz::<f64>(dir.join("packed.npz"), "x.npy")
            .unwrap()
            .to_vec(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    let err = read_npz::<f32>(dir.join("packed.npz"), "ids")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("array `ids` is not float32 or float64"),
        "{err}"
    );
    let err = read_npz::<f32>(dir.join("none.npz"), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&dir.join("none.npz").display().to_string()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
