package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/oneoffd/oneoffd/client"
)

// uploadFiles turns --file paths into files to send: a regular file as it
// is, a directory as a tar.gz written to a temporary file first, so that
// its size is known and nothing is held in memory. cleanup removes the
// temporary files.
func uploadFiles(paths []string) (files []client.File, cleanup func(), err error) {
	var temps []string
	cleanup = func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, cleanup, fmt.Errorf("--file %s: %w", p, err)
		}
		name := filepath.Base(filepath.Clean(p))
		switch {
		case fi.Mode().IsRegular():
			files = append(files, client.File{Name: name, Size: fi.Size(), Open: opener(p)})
		case fi.IsDir():
			tmp, size, err := tarGz(p)
			if tmp != "" {
				temps = append(temps, tmp)
			}
			if err != nil {
				return nil, cleanup, fmt.Errorf("--file %s: pack the directory: %w", p, err)
			}
			files = append(files, client.File{Name: name, Size: size, Archive: true, Open: opener(tmp)})
		default:
			return nil, cleanup, fmt.Errorf("--file %s: not a regular file or a directory", p)
		}
	}
	return files, cleanup, nil
}

func opener(path string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(path) }
}

// tarGz packs a directory's files, directories and symbolic links into a
// temporary tar.gz and returns its path and size.
func tarGz(dir string) (string, int64, error) {
	f, err := os.CreateTemp("", "oneoff-upload-*.tar.gz")
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, devices, pipes: not for an upload
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return f.Name(), 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return f.Name(), 0, err
	}
	return f.Name(), fi.Size(), nil
}

// uploadProgress shows a progress bar for each file on a terminal, and
// nothing elsewhere.
func uploadProgress(g *globals) func(client.File) io.Writer {
	f, ok := g.err.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(file client.File) io.Writer {
		desc := "uploading " + file.Name
		if file.Archive {
			desc += " (tar.gz)"
		}
		return progressbar.NewOptions64(file.Size,
			progressbar.OptionSetWriter(g.err),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionShowCount(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(g.err) }),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
}
