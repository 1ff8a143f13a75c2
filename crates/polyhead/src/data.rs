//! Data from files, read into memory: NumPy `.npy` arrays and `.npz`
//! archives ([`read_npy`], [`write_npy`], [`read_npz`], [`write_npz`]),
//! image folders with a manifest ([`ImageFolder`], PNG and
//! JPEG through the `image` crate), and CSV tables with a typed mapping
//! from columns to the model's input and to each head's target,
//! where an empty cell in a head's column means "no target for this head
//! on this row" (a 0 in that head's mask, which `head_loss` turns into the
//! mean over the labelled rows), never a zero.
//!
//! ```
//! use polyhead::data::CsvReader;
//! let dir = std::env::temp_dir().join(format!("polyhead-data-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("flowers.csv");
//! std::fs::write(&path, "length,width,species,height\n1.0,0.5,2,3.0\n2.0,0.25,,4.5\n")?;
//! let table = CsvReader::new()
//!     .inputs(&["length", "width"])
//!     .classes("species", 3)
//!     .values("height", &["height"])
//!     .read::<f32>(&path)?;
//! assert_eq!(table.inputs().to_vec(), vec![1.0, 0.5, 2.0, 0.25]);
//! assert_eq!(table.mask("species")?.to_vec(), vec![1.0, 0.0]); // row 2 has no species
//! assert_eq!(table.values("height")?.to_vec(), vec![3.0, 4.5]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use polyhead_losses::Labels;
use polyhead_tensor::{Float, Tensor};

use crate::error::{Error, Result};
use crate::multi_output::MultiOutput;

/// A data set that [`Trainer::fit_dataset`](crate::Trainer::fit_dataset)
/// reads batch by batch (on a background thread, hence `Sync`): its number
/// of samples, and the inputs and targets of any rows, in that order.
/// [`FromFn`] makes one from a function; [`NpyRows`] reads rows of a large
/// `.npy` file on demand.
pub trait Dataset<M: MultiOutput<T>, T: Float>: Sync {
    /// The number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The samples at `rows`, in that order.
    #[allow(clippy::type_complexity)]
    fn batch(&self, rows: &[usize]) -> Result<(M::Inputs<Tensor<T>>, M::Targets)>;
}

/// A [`Dataset`] of `len` samples made by a function of the rows asked
/// for (see [`Trainer::fit_dataset`](crate::Trainer::fit_dataset) for an
/// example).
#[derive(Debug, Clone)]
pub struct FromFn<F> {
    len: usize,
    make: F,
}

impl<F> FromFn<F> {
    /// `len` samples, `make(rows)` giving the inputs and targets of `rows`.
    ///
    /// ```
    /// let data = polyhead::data::FromFn::new(10, |rows: &[usize]| rows.len());
    /// # let _ = data;
    /// ```
    pub fn new(len: usize, make: F) -> Self {
        FromFn { len, make }
    }
}

impl<M, T, F> Dataset<M, T> for FromFn<F>
where
    M: MultiOutput<T>,
    T: Float,
    F: Fn(&[usize]) -> Result<(M::Inputs<Tensor<T>>, M::Targets)> + Sync,
{
    fn len(&self) -> usize {
        self.len
    }
    fn batch(&self, rows: &[usize]) -> Result<(M::Inputs<Tensor<T>>, M::Targets)> {
        (self.make)(rows)
    }
}

/// What one head's target is made of.
#[derive(Debug, Clone, PartialEq)]
enum HeadColumns {
    /// One column of class indices in `0..classes`.
    Classes { column: String, classes: usize },
    /// Numeric columns, one target value each.
    Values(Vec<String>),
}

/// How a CSV file maps to a model's input and its heads' targets (see the
/// [module docs](self)). The file has a header row naming its columns;
/// columns the mapping does not name are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CsvReader {
    inputs: Vec<String>,
    heads: Vec<(String, HeadColumns)>,
    delimiter: Option<u8>,
    skip_bad_rows: bool,
}

impl CsvReader {
    /// A mapping with no columns yet.
    ///
    /// ```
    /// let reader = polyhead::data::CsvReader::new();
    /// # let _ = reader;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The input's columns, in this order (every input cell must hold a
    /// number).
    ///
    /// ```
    /// let reader = polyhead::data::CsvReader::new().inputs(&["a", "b"]);
    /// # let _ = reader;
    /// ```
    pub fn inputs(mut self, columns: &[&str]) -> Self {
        self.inputs = columns.iter().map(|c| c.to_string()).collect();
        self
    }

    /// A head whose target is the class index in `column` (`0..classes`);
    /// an empty cell leaves the row unlabelled for this head.
    ///
    /// ```
    /// let reader = polyhead::data::CsvReader::new().classes("species", 3);
    /// # let _ = reader;
    /// ```
    pub fn classes(mut self, column: &str, classes: usize) -> Self {
        self.heads.push((
            column.to_string(),
            HeadColumns::Classes {
                column: column.to_string(),
                classes,
            },
        ));
        self
    }

    /// A head named `head` whose target is the numbers in `columns`; a row
    /// with any of them empty is unlabelled for this head.
    ///
    /// ```
    /// let reader = polyhead::data::CsvReader::new().values("bbox", &["x0", "y0", "x1", "y1"]);
    /// # let _ = reader;
    /// ```
    pub fn values(mut self, head: &str, columns: &[&str]) -> Self {
        self.heads.push((
            head.to_string(),
            HeadColumns::Values(columns.iter().map(|c| c.to_string()).collect()),
        ));
        self
    }

    /// The field delimiter (default `,`).
    ///
    /// ```
    /// let reader = polyhead::data::CsvReader::new().delimiter(b';');
    /// # let _ = reader;
    /// ```
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = Some(delimiter);
        self
    }

    /// Leave out the rows [`read`](Self::read) would refuse (a row with
    /// another number of fields, a cell that is not a number, a class out
    /// of range, an empty input cell) instead of failing on the first:
    /// the table lists each with its line and reason
    /// ([`CsvTable::skipped`]) and `read` writes their count to standard
    /// error. A missing file or column still fails.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-skip-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// std::fs::write(&path, "a,c\n1,0\nx,1\n2,7\n3,1\n")?;
    /// let reader = polyhead::data::CsvReader::new().inputs(&["a"]).classes("c", 2);
    /// assert!(reader.read::<f32>(&path).is_err());
    /// let table = reader.skip_bad_rows(true).read::<f32>(&path)?;
    /// assert_eq!(table.inputs().to_vec(), vec![1.0, 3.0]);
    /// assert_eq!(table.skipped().iter().map(|s| s.line).collect::<Vec<_>>(), vec![3, 4]);
    /// assert_eq!(table.skipped()[1].reason, "column `c`: class 7 is not in 0..2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn skip_bad_rows(mut self, skip: bool) -> Self {
        self.skip_bad_rows = skip;
        self
    }

    /// Reads `path` whole. Errors name the file, the line and the column:
    /// a missing column, a row with another number of fields, a cell that
    /// is not a number, a class out of range, an empty input cell (unless
    /// such rows are [skipped](Self::skip_bad_rows)).
    ///
    /// ```
    /// use polyhead::data::CsvReader;
    /// let err = CsvReader::new().inputs(&["a"]).read::<f32>("no/such/file.csv").unwrap_err();
    /// assert!(err.to_string().starts_with("no/such/file.csv: "));
    /// ```
    pub fn read<T: Float>(&self, path: impl AsRef<Path>) -> Result<CsvTable<T>> {
        Ok(self.read_table(path.as_ref(), None)?.0)
    }

    /// [`read`](Self::read), and with `file_column` each kept row's text in
    /// that column (which must not be empty) and its line: an image
    /// folder's manifest.
    #[allow(clippy::type_complexity)]
    fn read_table<T: Float>(
        &self,
        path: &Path,
        file_column: Option<&str>,
    ) -> Result<(CsvTable<T>, Vec<(u64, String)>)> {
        let shown = path.display().to_string();
        let fail = |message: String| Error::File {
            path: shown.clone(),
            message,
        };
        if self.inputs.is_empty() && self.heads.is_empty() && file_column.is_none() {
            return Err(fail("the mapping names no column".into()));
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter.unwrap_or(b','))
            // Rows of another length are refused by `parse_row`, by line.
            .flexible(true)
            .from_path(path)
            .map_err(|e| fail(e.to_string()))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| fail(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let index = |name: &str| column_of(&header, name).map_err(fail);
        let input_columns: Vec<usize> = self
            .inputs
            .iter()
            .map(|c| index(c))
            .collect::<Result<_>>()?;
        let head_columns: Vec<Vec<usize>> = self
            .heads
            .iter()
            .map(|(_, h)| match h {
                HeadColumns::Classes { column, .. } => Ok(vec![index(column)?]),
                HeadColumns::Values(columns) => columns.iter().map(|c| index(c)).collect(),
            })
            .collect::<Result<_>>()?;
        let mut inputs: Vec<T> = Vec::new();
        let mut targets: Vec<Vec<f64>> = vec![Vec::new(); self.heads.len()];
        let mut masks: Vec<Vec<T>> = vec![Vec::new(); self.heads.len()];
        let file_column = file_column.map(index).transpose()?;
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        let mut rows = 0usize;
        for record in reader.records() {
            // A row's cells, or why it is refused (naming the column).
            let row = record
                .map_err(|e| (e.position().map_or(0, |p| p.line()), e.to_string()))
                .and_then(|record| {
                    let line = record.position().map_or(0, |p| p.line());
                    let file = match file_column {
                        Some(col) => match record.get(col).unwrap_or("").trim() {
                            "" => Err((
                                line,
                                format!("column `{}`: the file cell is empty", header[col]),
                            )),
                            name => Ok(Some((line, name.to_string()))),
                        },
                        None => Ok(None),
                    }?;
                    self.parse_row(&record, &header, &input_columns, &head_columns)
                        .map(|row| (row, file))
                        .map_err(|reason| (line, reason))
                });
            match row {
                Ok(((input, head_values), file)) => {
                    files.extend(file);
                    inputs.extend(input.into_iter().map(T::from_f64));
                    for (h, values) in head_values.into_iter().enumerate() {
                        let labelled = values.iter().all(Option::is_some);
                        targets[h].extend(values.iter().map(|v| v.unwrap_or(0.0)));
                        masks[h].push(if labelled { T::ONE } else { T::ZERO });
                    }
                    rows += 1;
                }
                Err((line, reason)) if self.skip_bad_rows => {
                    skipped.push(SkippedRow { line, reason });
                }
                Err((0, reason)) => return Err(fail(reason)),
                Err((line, reason)) => return Err(fail(format!("line {line}, {reason}"))),
            }
        }
        if !skipped.is_empty() {
            eprintln!(
                "polyhead: {shown}: skipped {} bad row{} of {} (first: line {}, {})",
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" },
                rows + skipped.len(),
                skipped[0].line,
                skipped[0].reason
            );
        }
        let table = CsvTable {
            file: shown,
            skipped,
            inputs: Tensor::from_vec(inputs, &[rows, self.inputs.len()])?,
            heads: self
                .heads
                .iter()
                .zip(targets)
                .zip(masks)
                .map(|(((name, spec), values), mask)| {
                    Ok(HeadData {
                        name: name.clone(),
                        classes: matches!(spec, HeadColumns::Classes { .. }),
                        width: match spec {
                            HeadColumns::Classes { .. } => 1,
                            HeadColumns::Values(c) => c.len(),
                        },
                        values,
                        mask: Tensor::from_vec(mask, &[rows])?,
                    })
                })
                .collect::<Result<_>>()?,
        };
        Ok((table, files))
    }

    /// One record's input values and each head's values (`None` where a
    /// cell is empty), or why the row is refused, naming the column.
    #[allow(clippy::type_complexity)]
    fn parse_row(
        &self,
        record: &csv::StringRecord,
        header: &[String],
        input_columns: &[usize],
        head_columns: &[Vec<usize>],
    ) -> std::result::Result<(Vec<f64>, Vec<Vec<Option<f64>>>), String> {
        if record.len() != header.len() {
            return Err(format!(
                "{} fields where the header has {}",
                record.len(),
                header.len()
            ));
        }
        let number = |col: usize| -> std::result::Result<Option<f64>, String> {
            let text = record.get(col).unwrap_or("").trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| format!("column `{}`: `{text}` is not a finite number", header[col]))
        };
        let input = input_columns
            .iter()
            .map(|&col| {
                number(col)?.ok_or_else(|| {
                    format!(
                        "column `{}`: an input cell is empty (only targets may be missing)",
                        header[col]
                    )
                })
            })
            .collect::<std::result::Result<_, _>>()?;
        let mut heads = Vec::with_capacity(self.heads.len());
        for ((_, spec), cols) in self.heads.iter().zip(head_columns) {
            let values: Vec<Option<f64>> = cols
                .iter()
                .map(|&c| number(c))
                .collect::<std::result::Result<_, _>>()?;
            if let HeadColumns::Classes { classes, .. } = spec
                && let Some(Some(v)) = values.first()
                && (v.fract() != 0.0 || *v < 0.0 || *v >= *classes as f64)
            {
                return Err(format!(
                    "column `{}`: class {v} is not in 0..{classes}",
                    header[cols[0]]
                ));
            }
            heads.push(values);
        }
        Ok((input, heads))
    }
}

#[derive(Debug, Clone)]
struct HeadData<T: Float> {
    name: String,
    classes: bool,
    width: usize,
    /// Row-major, 0 where unlabelled.
    values: Vec<f64>,
    mask: Tensor<T>,
}

/// A row [`CsvReader::skip_bad_rows`] left out: its line in the file and
/// why (naming the column).
///
/// ```
/// let row = polyhead::data::SkippedRow { line: 3, reason: "column `x`: `abc` is not a finite number".into() };
/// assert_eq!(row.line, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// The row's line in the file (the header is line 1).
    pub line: u64,
    /// Why the row was refused, e.g. "column `x`: `abc` is not a finite
    /// number".
    pub reason: String,
}

/// A CSV file read by a [`CsvReader`]: the input `[rows, columns]` and
/// each head's target and mask (1 = labelled), by head name.
#[derive(Debug, Clone)]
pub struct CsvTable<T: Float = f32> {
    file: String,
    skipped: Vec<SkippedRow>,
    inputs: Tensor<T>,
    heads: Vec<HeadData<T>>,
}

impl<T: Float> CsvTable<T> {
    fn head(&self, name: &str) -> Result<&HeadData<T>> {
        self.heads.iter().find(|h| h.name == name).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no head `{name}` in the mapping (heads: {})",
                self.file,
                self.heads
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The input, `[rows, input columns]`.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-inputs-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// # std::fs::write(&path, "a,b\n1,2\n")?;
    /// let table = polyhead::data::CsvReader::new().inputs(&["b", "a"]).read::<f64>(&path)?;
    /// assert_eq!(table.inputs().to_vec(), vec![2.0, 1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inputs(&self) -> &Tensor<T> {
        &self.inputs
    }

    /// The rows left out by [`CsvReader::skip_bad_rows`], in file order
    /// (none unless asked for: otherwise a bad row is an error).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-skipped-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// # std::fs::write(&path, "a\n1\n")?;
    /// assert!(polyhead::data::CsvReader::new().inputs(&["a"]).read::<f32>(&path)?.skipped().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn skipped(&self) -> &[SkippedRow] {
        &self.skipped
    }

    /// The number of rows read.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-rows-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// # std::fs::write(&path, "a\n1\n2\n")?;
    /// assert_eq!(polyhead::data::CsvReader::new().inputs(&["a"]).read::<f32>(&path)?.rows(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rows(&self) -> usize {
        self.inputs.shape()[0]
    }

    /// A class head's labels (0 on its unlabelled rows, which its mask
    /// leaves out).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-labels-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// # std::fs::write(&path, "a,c\n1,2\n2,\n")?;
    /// let table = polyhead::data::CsvReader::new().inputs(&["a"]).classes("c", 3).read::<f32>(&path)?;
    /// assert_eq!(table.labels("c")?.as_array().iter().copied().collect::<Vec<_>>(), vec![2, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn labels(&self, head: &str) -> Result<Labels> {
        let h = self.head(head)?;
        if !h.classes {
            return Err(Error::Invalid(format!(
                "{}: head `{head}` holds values, not classes: use `values`",
                self.file
            )));
        }
        Ok(Labels::new(
            h.values.iter().map(|&v| v as i64).collect(),
            &[h.values.len()],
        )?)
    }

    /// A value head's target `[rows, columns]` (0 on unlabelled rows).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-values-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// # std::fs::write(&path, "a,x,y\n1,2,3\n")?;
    /// let table = polyhead::data::CsvReader::new().inputs(&["a"]).values("xy", &["x", "y"]).read::<f32>(&path)?;
    /// assert_eq!(table.values("xy")?.shape(), &[1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn values(&self, head: &str) -> Result<Tensor<T>> {
        let h = self.head(head)?;
        if h.classes {
            return Err(Error::Invalid(format!(
                "{}: head `{head}` holds classes: use `labels`",
                self.file
            )));
        }
        Ok(Tensor::from_vec(
            h.values.iter().map(|&v| T::from_f64(v)).collect(),
            &[self.rows(), h.width],
        )?)
    }

    /// A head's mask `[rows]`: 1 where the row has this head's target, 0
    /// where its cells were empty. Give it to the derived targets
    /// (`<Model>Targets::<head>_mask`) so that the head's loss is the mean
    /// over its labelled rows.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-data-mask-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("t.csv");
    /// # std::fs::write(&path, "a,x\n1,\n2,5\n")?;
    /// let table = polyhead::data::CsvReader::new().inputs(&["a"]).values("x", &["x"]).read::<f32>(&path)?;
    /// assert_eq!(table.mask("x")?.to_vec(), vec![0.0, 1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mask(&self, head: &str) -> Result<Tensor<T>> {
        Ok(self.head(head)?.mask.clone())
    }
}

/// A NumPy `.npy` file of `float32` or `float64` values as a tensor of `T`
/// (the other precision is converted, rounding to nearest). Errors name
/// the file: a missing file, another dtype (integers, say), a malformed
/// header or truncated data.
///
/// ```
/// use polyhead::tensor::Tensor;
/// let dir = std::env::temp_dir().join(format!("polyhead-npy-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("x.npy");
/// polyhead::data::write_npy(&path, &Tensor::<f64>::from_vec(vec![1.0, 2.5, -3.0, 4.0], &[2, 2])?)?;
/// let x = polyhead::data::read_npy::<f32>(&path)?;
/// assert_eq!((x.shape(), x.to_vec()), (&[2, 2][..], vec![1.0, 2.5, -3.0, 4.0]));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_npy<T: Float>(path: impl AsRef<Path>) -> Result<Tensor<T>> {
    use ndarray_npy::ReadNpyExt;
    let path = path.as_ref();
    let fail = |message: String| Error::File {
        path: path.display().to_string(),
        message,
    };
    let open = || std::fs::File::open(path).map_err(|e| fail(e.to_string()));
    // The file's own dtype decides how it is read; the other one fails
    // with a type error, which is then tried the other way.
    let as_f64 = ndarray::ArrayD::<f64>::read_npy(open()?);
    match as_f64 {
        Ok(a) => tensor_of(&a),
        Err(first) => match ndarray::ArrayD::<f32>::read_npy(open()?) {
            Ok(a) => tensor_of(&a),
            Err(_) => Err(fail(format!(
                "not a float32 or float64 .npy array ({first})"
            ))),
        },
    }
}

/// Writes a tensor as a NumPy `.npy` file (`float32` or `float64` as `T`
/// is), to a temporary file first and then renamed over `path`, so that a
/// failure never leaves a half-written file.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("polyhead-npy-write-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let t = polyhead::tensor::Tensor::<f32>::ones(&[3])?;
/// polyhead::data::write_npy(dir.join("ones.npy"), &t)?;
/// assert_eq!(polyhead::data::read_npy::<f32>(dir.join("ones.npy"))?.to_vec(), vec![1.0; 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_npy<T: Float>(path: impl AsRef<Path>, tensor: &Tensor<T>) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let path = path.as_ref();
    let fail = |message: String| Error::File {
        path: path.display().to_string(),
        message,
    };
    let tmp = path.with_extension("npy.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| fail(e.to_string()))?;
    let result = match FloatArray::of(tensor).map_err(|e| fail(e.to_string()))? {
        FloatArray::F32(a) => a.write_npy(std::io::BufWriter::new(file)),
        FloatArray::F64(a) => a.write_npy(std::io::BufWriter::new(file)),
    };
    result.map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
}

/// A folder of PNG or JPEG images with a manifest CSV: one row per image,
/// a column naming its file (relative to the folder) and the targets read
/// by a [`CsvReader`] mapping (classes, boxes, empty cells for missing
/// labels). Each image is decoded, converted to grey or RGB and resized
/// (bilinear) to the model's input, values in `[0, 1]`.
///
/// ```
/// use polyhead::data::{CsvReader, ImageFolder};
/// let dir = std::env::temp_dir().join(format!("polyhead-images-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// image::GrayImage::from_pixel(8, 8, image::Luma([255])).save(dir.join("white.png"))?;
/// std::fs::write(dir.join("manifest.csv"), "file,class\nwhite.png,1\n")?;
/// let (images, table) = ImageFolder::new(&dir, "manifest.csv", "file", [4, 4], 1)
///     .read::<f32>(&CsvReader::new().classes("class", 2))?;
/// assert_eq!(images.shape(), &[1, 4, 4, 1]);
/// assert_eq!(images.to_vec(), vec![1.0; 16]);
/// assert_eq!(table.mask("class")?.to_vec(), vec![1.0]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    dir: std::path::PathBuf,
    manifest: String,
    file_column: String,
    size: [usize; 2],
    channels: usize,
}

impl ImageFolder {
    /// Images in `dir`, listed by the CSV `manifest` (in `dir`) whose
    /// `file_column` names each file; resized to `size` (`[height,
    /// width]`) with `channels` 1 (grey) or 3 (RGB).
    ///
    /// ```
    /// let folder = polyhead::data::ImageFolder::new("photos", "manifest.csv", "file", [28, 28], 1);
    /// # let _ = folder;
    /// ```
    pub fn new(
        dir: impl AsRef<Path>,
        manifest: &str,
        file_column: &str,
        size: [usize; 2],
        channels: usize,
    ) -> Self {
        ImageFolder {
            dir: dir.as_ref().to_path_buf(),
            manifest: manifest.to_string(),
            file_column: file_column.to_string(),
            size,
            channels,
        }
    }

    /// The images `[n, height, width, channels]` and the manifest's targets
    /// (read with `targets`, whose `inputs` should be empty). Errors name
    /// the manifest's line and the file: a missing or undecodable image,
    /// an empty file cell; and the manifest's own errors as
    /// [`CsvReader::read`] reports them.
    ///
    /// ```
    /// use polyhead::data::{CsvReader, ImageFolder};
    /// let err = ImageFolder::new("no/such/dir", "manifest.csv", "file", [8, 8], 1)
    ///     .read::<f32>(&CsvReader::new().classes("class", 2))
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("no/such/dir/manifest.csv: "));
    /// ```
    pub fn read<T: Float>(&self, targets: &CsvReader) -> Result<(Tensor<T>, CsvTable<T>)> {
        let (images, table) = self.index::<T>(targets)?;
        let all: Vec<usize> = (0..images.len()).collect();
        Ok((images.rows(&all)?, table))
    }

    /// The manifest's targets and its list of images, decoded only when
    /// asked for ([`ImageRows::rows`]): a folder larger than memory can feed
    /// [`Trainer::fit_dataset`](crate::Trainer::fit_dataset) one batch at a
    /// time. The same errors as [`read`](Self::read), an image's when it is
    /// read.
    ///
    /// ```
    /// use polyhead::data::{CsvReader, ImageFolder};
    /// let dir = std::env::temp_dir().join(format!("polyhead-images-index-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// image::GrayImage::from_pixel(4, 4, image::Luma([0])).save(dir.join("black.png"))?;
    /// std::fs::write(dir.join("manifest.csv"), "file,class\nblack.png,0\nblack.png,1\n")?;
    /// let (images, table) = ImageFolder::new(&dir, "manifest.csv", "file", [2, 2], 1)
    ///     .index::<f32>(&CsvReader::new().classes("class", 2))?;
    /// assert_eq!((images.len(), table.rows()), (2, 2));
    /// assert_eq!(images.rows::<f32>(&[1])?.shape(), &[1, 2, 2, 1]);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn index<T: Float>(&self, targets: &CsvReader) -> Result<(ImageRows, CsvTable<T>)> {
        let manifest = self.dir.join(&self.manifest);
        let shown = manifest.display().to_string();
        if !matches!(self.channels, 1 | 3) || self.size.contains(&0) {
            return Err(Error::Invalid(format!(
                "{shown}: images are resized to a positive size with 1 or 3 channels, got {:?} and {}",
                self.size, self.channels
            )));
        }
        let (table, names) = targets.read_table::<T>(&manifest, Some(&self.file_column))?;
        let files = names
            .into_iter()
            .map(|(line, name)| (line, self.dir.join(name)))
            .collect();
        Ok((
            ImageRows {
                manifest: shown,
                files,
                size: self.size,
                channels: self.channels,
            },
            table,
        ))
    }
}

/// The images an [`ImageFolder`] manifest lists, decoded and resized when
/// asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRows {
    manifest: String,
    /// Each image's manifest line and path.
    files: Vec<(u64, std::path::PathBuf)>,
    size: [usize; 2],
    channels: usize,
}

impl ImageRows {
    /// The number of images listed (read only when asked for).
    ///
    /// ```
    /// # use polyhead::data::{CsvReader, ImageFolder};
    /// # let dir = std::env::temp_dir().join(format!("polyhead-images-len-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # std::fs::write(dir.join("m.csv"), "file,class\na.png,0\n")?;
    /// let (images, _) = ImageFolder::new(&dir, "m.csv", "file", [2, 2], 1).index::<f32>(&CsvReader::new().classes("class", 2))?;
    /// assert_eq!(images.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the manifest lists no image.
    ///
    /// ```
    /// # use polyhead::data::{CsvReader, ImageFolder};
    /// # let dir = std::env::temp_dir().join(format!("polyhead-images-empty-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # std::fs::write(dir.join("m.csv"), "file,class\n")?;
    /// let (images, _) = ImageFolder::new(&dir, "m.csv", "file", [2, 2], 1).index::<f32>(&CsvReader::new().classes("class", 2))?;
    /// assert!(images.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The images at `rows` as `[rows.len(), height, width, channels]`,
    /// values in `[0, 1]`; a missing or undecodable image is an error naming
    /// the manifest line and the file.
    ///
    /// ```
    /// # use polyhead::data::{CsvReader, ImageFolder};
    /// # let dir = std::env::temp_dir().join(format!("polyhead-images-rows-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # std::fs::write(dir.join("m.csv"), "file,class\nmissing.png,0\n")?;
    /// let (images, _) = ImageFolder::new(&dir, "m.csv", "file", [2, 2], 1).index::<f32>(&CsvReader::new().classes("class", 2))?;
    /// assert!(images.rows::<f32>(&[0]).unwrap_err().to_string().contains("line 2, file `"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rows<T: Float>(&self, rows: &[usize]) -> Result<Tensor<T>> {
        use rayon::prelude::*;
        let [h, w] = self.size;
        // Decoded in parallel (in row order, so the first error is the
        // first bad row asked for).
        let images: Vec<Vec<T>> = rows
            .par_iter()
            .map(|&r| self.decode(r))
            .collect::<Result<_>>()?;
        Ok(Tensor::from_vec(
            images.concat(),
            &[rows.len(), h, w, self.channels],
        )?)
    }

    /// Image `r`, decoded, converted and resized, values in `[0, 1]`.
    fn decode<T: Float>(&self, r: usize) -> Result<Vec<T>> {
        let fail = |message: String| Error::File {
            path: self.manifest.clone(),
            message,
        };
        let [h, w] = self.size;
        let (line, path) = self
            .files
            .get(r)
            .ok_or_else(|| fail(format!("image {r} is not in 0..{}", self.files.len())))?;
        let image = image::open(path)
            .map_err(|e| fail(format!("line {line}, file `{}`: {e}", path.display())))?;
        let resized = if (image.height() as usize, image.width() as usize) == (h, w) {
            image
        } else {
            image.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
        };
        let scale = |v: u8| T::from_f64(f64::from(v) / 255.0);
        Ok(if self.channels == 1 {
            resized
                .to_luma8()
                .into_raw()
                .into_iter()
                .map(scale)
                .collect()
        } else {
            resized
                .to_rgb8()
                .into_raw()
                .into_iter()
                .map(scale)
                .collect()
        })
    }
}

/// The rows of a float32 or float64 `.npy` file (C order), memory-mapped
/// and copied out when asked for, so a file larger than memory can feed
/// [`Trainer::fit_dataset`](crate::Trainer::fit_dataset) one batch at a
/// time: the operating system pages the file in and out, and the heap
/// holds only the batches read. A row is everything after the first axis.
///
/// As with `numpy.load(mmap_mode="r")`, the file must not be truncated or
/// written in place while it is open (replacing it, as
/// [`write_npy`] does through a rename, is safe: the mapping keeps the old
/// file).
///
/// ```
/// use polyhead::tensor::Tensor;
/// let dir = std::env::temp_dir().join(format!("polyhead-npy-rows-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("x.npy");
/// polyhead::data::write_npy(&path, &Tensor::<f32>::from_vec((0..12).map(|v| v as f32).collect(), &[4, 3])?)?;
/// let rows = polyhead::data::NpyRows::open(&path)?;
/// assert_eq!((rows.len(), rows.row_shape()), (4, &[3][..]));
/// assert_eq!(rows.rows::<f32>(&[3, 0])?.to_vec(), vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct NpyRows {
    path: std::path::PathBuf,
    shape: Vec<usize>,
    /// Bytes per element: 4 (`<f4`) or 8 (`<f8`).
    element: usize,
    /// Where the data starts.
    offset: usize,
    /// The whole file, mapped read-only.
    map: std::sync::Arc<memmap2::Mmap>,
}

impl NpyRows {
    /// Maps `path` and reads its header: a little-endian float32 or float64
    /// array in C order with at least one axis; anything else is an error
    /// naming the file. (The header is read here, not by ndarray-npy, which
    /// reads whole arrays only.)
    ///
    /// ```
    /// let err = polyhead::data::NpyRows::open("no/such.npy").unwrap_err();
    /// assert!(err.to_string().starts_with("no/such.npy: "));
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let fail = |message: String| Error::File {
            path: path.display().to_string(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let map = map_file(&file).map_err(|e| fail(e.to_string()))?;
        let bytes: &[u8] = &map;
        if bytes.len() < 8 || &bytes[..6] != b"\x93NUMPY" {
            return Err(fail("not an .npy file (no magic string)".into()));
        }
        let (header_len, header_at) = match bytes[6] {
            1 if bytes.len() >= 10 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            1..=3 => return Err(fail("truncated header".into())),
            v => return Err(fail(format!(".npy format version {v} is not supported"))),
        };
        let header = bytes
            .get(header_at..header_at + header_len)
            .ok_or_else(|| fail("truncated header".into()))?;
        let header = String::from_utf8_lossy(header);
        let value = |key: &str| -> Option<&str> {
            let at = header.find(&format!("'{key}':"))? + key.len() + 3;
            Some(header[at..].trim_start())
        };
        let element = match value("descr").and_then(|v| v.get(1..4)) {
            Some("<f4") => 4,
            Some("<f8") => 8,
            other => {
                return Err(fail(format!(
                    "holds {}, not little-endian float32 or float64",
                    other.unwrap_or("an unknown dtype")
                )));
            }
        };
        if value("fortran_order").is_none_or(|v| !v.starts_with("False")) {
            return Err(fail("is not in C order".into()));
        }
        let shape_text = value("shape")
            .and_then(|v| v.strip_prefix('('))
            .and_then(|v| v.split(')').next())
            .ok_or_else(|| fail("has no shape".into()))?;
        let shape: Vec<usize> = shape_text
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                d.parse()
                    .map_err(|_| fail(format!("has a malformed shape ({shape_text})")))
            })
            .collect::<Result<_>>()?;
        if shape.is_empty() {
            return Err(fail("holds a scalar, not rows".into()));
        }
        let offset = header_at + header_len;
        let needed = shape
            .iter()
            .try_fold(element, |n: usize, &d| n.checked_mul(d))
            .and_then(|n| n.checked_add(offset))
            .ok_or_else(|| fail(format!("the shape {shape:?} is too large")))?;
        if bytes.len() < needed {
            return Err(fail(format!(
                "is truncated: {} bytes, the shape {shape:?} needs {needed}",
                bytes.len()
            )));
        }
        Ok(NpyRows {
            path: path.to_path_buf(),
            shape,
            element,
            offset,
            map: std::sync::Arc::new(map),
        })
    }

    /// The number of rows.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-npy-len-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # polyhead::data::write_npy(dir.join("x.npy"), &polyhead::tensor::Tensor::<f64>::zeros(&[5, 2])?)?;
    /// assert_eq!(polyhead::data::NpyRows::open(dir.join("x.npy"))?.len(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether the file has no rows.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-npy-empty-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # polyhead::data::write_npy(dir.join("x.npy"), &polyhead::tensor::Tensor::<f64>::zeros(&[0, 2])?)?;
    /// assert!(polyhead::data::NpyRows::open(dir.join("x.npy"))?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one row.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-npy-shape-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # polyhead::data::write_npy(dir.join("x.npy"), &polyhead::tensor::Tensor::<f64>::zeros(&[2, 28, 28, 1])?)?;
    /// assert_eq!(polyhead::data::NpyRows::open(dir.join("x.npy"))?.row_shape(), &[28, 28, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn row_shape(&self) -> &[usize] {
        &self.shape[1..]
    }

    /// The rows at `rows` (in that order) as `[rows.len(), row shape...]`,
    /// copied out of the mapped file; a row out of range is an error.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("polyhead-npy-read-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # polyhead::data::write_npy(dir.join("x.npy"), &polyhead::tensor::Tensor::<f64>::zeros(&[2, 3])?)?;
    /// let rows = polyhead::data::NpyRows::open(dir.join("x.npy"))?;
    /// assert!(rows.rows::<f32>(&[2]).unwrap_err().to_string().ends_with("row 2 is not in 0..2"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rows<T: Float>(&self, rows: &[usize]) -> Result<Tensor<T>> {
        let per_row: usize = self.row_shape().iter().product();
        let bytes = per_row * self.element;
        let mut values = Vec::with_capacity(rows.len() * per_row);
        for &r in rows {
            if r >= self.len() {
                return Err(Error::Shape(format!(
                    "{}: row {r} is not in 0..{}",
                    self.path.display(),
                    self.len()
                )));
            }
            let at = self.offset + r * bytes;
            let row = &self.map[at..at + bytes];
            if self.element == 4 {
                values.extend(
                    row.chunks_exact(4).map(|b| {
                        T::from_f64(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                    }),
                );
            } else {
                values.extend(
                    row.chunks_exact(8)
                        .map(|b| T::from_f64(f64::from_le_bytes(b.try_into().expect("8 bytes")))),
                );
            }
        }
        let mut shape = vec![rows.len()];
        shape.extend_from_slice(self.row_shape());
        Ok(Tensor::from_vec(values, &shape)?)
    }
}

/// `file` mapped read-only into memory, whole.
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes change, or
    // vanish (SIGBUS), if the file is modified or truncated while mapped,
    // which Rust cannot see. The map is read-only and private to an
    // `NpyRows`; polyhead itself never writes a file in place (`write_npy`
    // writes a temporary file and renames it, leaving the mapped inode
    // as it was), and `NpyRows` documents that others must not either,
    // the contract of `numpy.load(mmap_mode="r")`.
    unsafe { memmap2::Mmap::map(file) }
}

/// Array `name` of a NumPy `.npz` archive (`numpy.savez` or
/// `savez_compressed`; `name` with or without `.npy`), float32 or float64,
/// as a tensor of `T`. Errors name the archive and the array: a missing
/// archive or array (listing those it holds), another dtype.
///
/// ```
/// use polyhead::tensor::Tensor;
/// let dir = std::env::temp_dir().join(format!("polyhead-npz-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("data.npz");
/// polyhead::data::write_npz(&path, &[("x", &Tensor::<f32>::ones(&[2, 3])?), ("y", &Tensor::zeros(&[2])?)])?;
/// assert_eq!(polyhead::data::read_npz::<f32>(&path, "x")?.shape(), &[2, 3]);
/// let err = polyhead::data::read_npz::<f32>(&path, "z").unwrap_err().to_string();
/// assert!(err.ends_with("has no array `z` (it holds: x, y)"), "{err}");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_npz<T: Float>(path: impl AsRef<Path>, name: &str) -> Result<Tensor<T>> {
    let path = path.as_ref();
    let fail = |message: String| Error::File {
        path: path.display().to_string(),
        message,
    };
    let open = || {
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        ndarray_npy::NpzReader::new(file).map_err(|e| fail(e.to_string()))
    };
    let mut archive = open()?;
    let names = archive.names().map_err(|e| fail(e.to_string()))?;
    let base = name.trim_end_matches(".npy");
    let wanted = [base.to_string(), format!("{base}.npy")];
    let Some(entry) = names.iter().find(|n| wanted.contains(n)).cloned() else {
        let listed: Vec<&str> = names.iter().map(|n| n.trim_end_matches(".npy")).collect();
        return Err(fail(format!(
            "has no array `{name}` (it holds: {})",
            listed.join(", ")
        )));
    };
    match archive.by_name::<ndarray::OwnedRepr<f64>, ndarray::IxDyn>(&entry) {
        Ok(a) => tensor_of(&a),
        Err(first) => {
            let mut archive = open()?;
            match archive.by_name::<ndarray::OwnedRepr<f32>, ndarray::IxDyn>(&entry) {
                Ok(a) => tensor_of(&a),
                Err(_) => Err(fail(format!(
                    "array `{name}` is not float32 or float64 ({first})"
                ))),
            }
        }
    }
}

/// Writes tensors as a NumPy `.npz` archive (uncompressed, as
/// `numpy.savez`), each under its name, atomically (a temporary file
/// renamed over `path`).
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("polyhead-npz-write-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let t = polyhead::tensor::Tensor::<f64>::ones(&[3])?;
/// polyhead::data::write_npz(dir.join("one.npz"), &[("t", &t)])?;
/// assert_eq!(polyhead::data::read_npz::<f64>(dir.join("one.npz"), "t")?.to_vec(), vec![1.0; 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_npz<T: Float>(path: impl AsRef<Path>, arrays: &[(&str, &Tensor<T>)]) -> Result<()> {
    let path = path.as_ref();
    let fail = |message: String| Error::File {
        path: path.display().to_string(),
        message,
    };
    let tmp = path.with_extension("npz.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| fail(e.to_string()))?;
    let mut writer = ndarray_npy::NpzWriter::new(file);
    for (name, tensor) in arrays {
        let result = match FloatArray::of(*tensor).map_err(|e| fail(e.to_string()))? {
            FloatArray::F32(a) => writer.add_array(*name, &a),
            FloatArray::F64(a) => writer.add_array(*name, &a),
        };
        result.map_err(|e| fail(format!("array `{name}`: {e}")))?;
    }
    writer.finish().map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
}

/// The index of the CSV column `name`, or an error listing the header.
fn column_of(header: &[String], name: &str) -> std::result::Result<usize, String> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| format!("no column `{name}` (the header has: {})", header.join(", ")))
}

/// A NumPy float array read from a file, as a tensor of `T`.
fn tensor_of<T: Float, A: Copy + Into<f64>>(array: &ndarray::ArrayD<A>) -> Result<Tensor<T>> {
    let values = array.iter().map(|&v| T::from_f64(v.into())).collect();
    Ok(Tensor::from_vec(values, array.shape())?)
}

/// A tensor as the NumPy array of its own precision (`float32` for `f32`,
/// `float64` for `f64`), ready for `ndarray-npy` to write.
enum FloatArray {
    F32(ndarray::ArrayD<f32>),
    F64(ndarray::ArrayD<f64>),
}

impl FloatArray {
    fn of<T: Float>(tensor: &Tensor<T>) -> std::result::Result<Self, ndarray::ShapeError> {
        let shape = tensor.shape().to_vec();
        let values = tensor.to_vec();
        Ok(if T::NAME == "f32" {
            let data = values.iter().map(|v| v.to_f64() as f32).collect();
            FloatArray::F32(ndarray::ArrayD::from_shape_vec(shape, data)?)
        } else {
            let data = values.iter().map(|v| v.to_f64()).collect();
            FloatArray::F64(ndarray::ArrayD::from_shape_vec(shape, data)?)
        })
    }
}
